"""``python -m oxlin_async.testing``: the emulator as a process, driven over HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import shlex
import sys
from collections.abc import AsyncIterator, Sequence

import aiohttp
import attrs

from oxlin_async.testing import OxlinSandbox

STARTUP_TIMEOUT = 20.0
EXIT_TIMEOUT = 10.0


@attrs.frozen
class Printed:
    """What the emulator prints once it serves."""

    base_url: str
    auth_url: str
    api_url: str
    embed_url: str
    client_id: str
    client_secret: str
    users: list[tuple[str, str]]


async def _read_banner(proc: asyncio.subprocess.Process) -> Printed:
    assert proc.stdout is not None
    fields: dict[str, str] = {}
    users: list[tuple[str, str]] = []
    expected_users: int | None = None
    lines: list[str] = []
    names = {"OXLIN_CLIENT_ID": "client_id", "OXLIN_CLIENT_SECRET": "client_secret",
             "OXLIN_AUTH_URL": "auth", "OXLIN_API_URL": "api", "OXLIN_EMBED_URL": "embed"}
    while expected_users is None or len(users) < expected_users:
        raw = await asyncio.wait_for(proc.stdout.readline(), STARTUP_TIMEOUT)
        if not raw:
            raise AssertionError(f"the emulator exited early; it printed {lines!r}")
        line = raw.decode().rstrip("\n")
        lines.append(line)
        # every line pastes into a shell: `export NAME=value`, or a `#` comment
        assert line.startswith(("# ", "export ")), line
        if expected_users is not None:
            email, password = line.removeprefix("# ").split(",")
            users.append((email, password))
        elif match := re.fullmatch(r"# Oxlin emulator serving on (http://\S+) \(Ctrl-C to stop\)",
                                   line):
            fields["base"] = match[1]
        elif line.startswith("export "):
            name, value = shlex.split(line)[1].split("=", 1)
            fields[names[name]] = value
        elif match := re.fullmatch(r"# users \((\d+)\), email,password:", line):
            expected_users = int(match[1])
    return Printed(fields["base"], fields["auth"], fields["api"], fields["embed"],
                   fields["client_id"], fields["client_secret"], users)


@contextlib.asynccontextmanager
async def emulator(*args: str) -> AsyncIterator[Printed]:
    """Start the emulator, read what it prints, and always stop it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oxlin_async.testing", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        yield await _read_banner(proc)
        assert proc.returncode is None, "the emulator stopped while in use"
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.communicate(), EXIT_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.communicate()


async def _run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oxlin_async.testing", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def _password_grant(http: aiohttp.ClientSession, printed: Printed, email: str,
                          password: str) -> str:
    async with http.post(f"{printed.auth_url}/token", data={
            "grant_type": "password", "username": email, "password": password,
            "scope": "profile accounts_read", "client_id": printed.client_id,
            "client_secret": printed.client_secret}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["refresh_token"]
    return body["access_token"]  # type: ignore[no-any-return]


async def test_the_cli_serves_what_it_prints() -> None:
    async with emulator("--users", "2", "--seed", "1") as printed, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", printed.base_url)
        assert not printed.base_url.endswith(":0")
        assert printed.auth_url == f"{printed.base_url}/auth"
        assert printed.api_url == f"{printed.base_url}/api/v2.1"
        assert printed.embed_url == f"{printed.base_url}/embed/v2.1"
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                            printed.client_id)
        assert re.fullmatch(r"[0-9a-f]{20}", printed.client_secret)
        assert len(printed.users) == 2
        assert len({email for email, _ in printed.users}) == 2
        # The seed decides the credentials: the same as an in-process sandbox's.
        same = OxlinSandbox(users=2, seed=1)
        assert (printed.client_id, printed.client_secret) == (same.client_id,
                                                              same.client_secret)
        assert printed.users == [(u.email, u.password) for u in same.users]
        assert printed.client_id != OxlinSandbox(seed=2).client_id

        # A client token, as in the quickstart (Basic auth).
        async with http.post(f"{printed.auth_url}/token",
                             data={"grant_type": "client_credentials", "scope": "users_create"},
                             headers=_basic(printed.client_id, printed.client_secret)) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
            assert resp.headers["X-Request-ID"]
        assert body["token_type"] == "Bearer"
        assert body["scope"] == "users_create"

        # A printed user logs in and has seeded data.
        email, password = printed.users[1]
        token = await _password_grant(http, printed, email, password)
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{printed.api_url}/users/me", headers=headers) as resp:
            assert resp.status == 200
            assert (await resp.json())["email"] == email
        async with http.get(f"{printed.api_url}/accounts", headers=headers) as resp:
            assert resp.status == 200
            assert len(await resp.json()) == 3  # the default --accounts

        # Wrong credentials are refused as usual.
        async with http.post(f"{printed.auth_url}/token", data={
                "grant_type": "client_credentials", "client_id": printed.client_id,
                "client_secret": "0" * 20}) as resp:
            assert resp.status == 401


async def test_a_testbank_adds_a_user() -> None:
    async with emulator("--users", "2", "--seed", "1", "--testbank", "fr/harry_potter",
                        "--transactions", "5") as printed, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        assert len(printed.users) == 3
        email, password = printed.users[-1]
        assert "harry.potter" in email
        token = await _password_grant(http, printed, email, password)
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{printed.api_url}/connections", headers=headers) as resp:
            assert resp.status == 200
            (connection,) = await resp.json()
        assert connection["name"] == "Linxo Test Bank"
        assert connection["owner"] == {"name": "HARRY POTTER"}
        async with http.get(f"{printed.api_url}/accounts", headers=headers) as resp:
            (account,) = await resp.json()
        assert account["name"] == "account 01"
        # --transactions shapes the seeded users only.
        seeded_token = await _password_grant(http, printed, *printed.users[0])
        async with http.get(f"{printed.api_url}/transactions", headers={
                "Authorization": f"Bearer {seeded_token}"}) as resp:
            assert len(await resp.json()) == 15


BAD_ARGUMENTS: list[Sequence[str]] = [
    ("--fault-rate", "2"),
    ("--users", "-1"),
    ("--testbank", "fr/no_such_bank"),
]


async def test_bad_arguments_fail_with_one_line() -> None:
    # The processes run side by side: each spends most of its time importing.
    results = await asyncio.gather(*(_run("--port", "0", *args) for args in BAD_ARGUMENTS))
    for args, (code, out, err) in zip(BAD_ARGUMENTS, results, strict=True):
        assert code != 0, args
        assert out == "", args
        lines = err.splitlines()
        assert len(lines) == 1, (args, err)
        assert lines[0].startswith("error:"), (args, err)
    assert "fault-rate" in results[0][2]


async def test_argparse_errors_and_help() -> None:
    (code, out, err), (help_code, help_out, help_err) = await asyncio.gather(
        _run("--users", "many"), _run("--help"))
    assert code == 2
    assert out == ""
    assert "usage:" in err
    assert "--users" in err
    assert help_code == 0
    assert "--fault-rate" in help_out
    assert "--testbank" in help_out
    assert help_err == ""
