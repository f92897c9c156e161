"""Who a user is in an export, and the tokens that keep them reachable.

A user is keyed by the e-mail, or for a token user by a digest of its token pair (never
a line number), so reordering or editing the users file between a run and its resume
still exports every user exactly once. Refresh tokens are single-use: each rotated pair
is kept in a 0600 token store beside the users file, and the next run starts from it.
These runs need one emulator across several command runs: it serves from a thread
(`served`), and the command reaches it by ``--auth-url``/``--api-url``/``--embed-url``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    Truth,
    assert_exact,
    in_tmp,
    new_client,
    read_jsonl,
    report_of,
    run,
    served,
    token_pairs,
    truth,
)

import oxlin_async as ox
from oxlin_async.bulk import token_key
from oxlin_async.testing import OxlinSandbox


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_tmp(tmp_path, monkeypatch)


def hosts(box: OxlinSandbox, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("OXLIN_CLIENT_ID", box.client_id)
    monkeypatch.setenv("OXLIN_CLIENT_SECRET", box.client_secret)
    return ["--auth-url", box.auth_url, "--api-url", box.api_url, "--embed-url", box.embed_url]


def keyed(want: Truth, keys: dict[str, str]) -> Truth:
    """The ground truth with users named by their keys in the export."""
    return {(keys[email], tx): value for (email, tx), value in want.items()}


# --------------------------------------------------------------------- token rotation
def test_same_command_twice_with_rotating_refresh_tokens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = OxlinSandbox(users=3, seed=41, transactions_per_account=15)
    with served(box) as call:
        pairs = token_pairs(box)
        lines = "".join(f"{a},{r}\n" for a, r in pairs.values())
        Path("users.csv").write_text("access_token,refresh_token\n" + lines)
        keys = {email: token_key(*pair) for email, pair in pairs.items()}
        command = ["export", *hosts(box, monkeypatch), "--users", "users.csv",
                   "--out", "tx.jsonl", "--overwrite", "--quiet"]
        store = tmp_path / "users.csv.tokens.json"
        for attempt in range(3):
            # The access tokens expire between runs: each run must refresh, and each
            # refresh consumes the refresh token it used.
            assert call(lambda: box.state.expire_tokens(clients=False)) >= 3
            assert run(command) == 0, (attempt, report_of(tmp_path / "tx.jsonl.report.json"))
            assert_exact(read_jsonl(tmp_path / "tx.jsonl"), keyed(truth(box), keys))
            assert stat.S_IMODE(store.stat().st_mode) == 0o600
            kept = json.loads(store.read_text())["tokens"]
            assert set(kept) == set(keys.values())  # the keys stay those of the users file
            refreshes = {v["refresh_token"] for v in kept.values()}
            assert not refreshes & {r for _, r in pairs.values()}  # rotated, every one
            assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
        assert Path("users.csv").read_text().endswith(lines)  # the users file untouched

        # Without the store the users file's refresh tokens are spent long ago: the
        # store is what made the runs above succeed.
        store.unlink()
        call(lambda: box.state.expire_tokens(clients=False))
        assert run(command) == 1
        report = report_of(tmp_path / "tx.jsonl.report.json")
        assert {r["error_type"] for r in report["results"]} == {"InvalidGrantError"}


def test_the_token_store_can_live_elsewhere(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    box = OxlinSandbox(users=1, seed=42, transactions_per_account=5)
    with served(box) as call:
        ((access, refresh),) = token_pairs(box).values()
        Path("users.csv").write_text(f"{access},{refresh}\n")
        call(lambda: box.state.expire_tokens(clients=False))
        (tmp_path / "secrets").mkdir()
        assert run(["export", *hosts(box, monkeypatch), "--users", "users.csv",
                    "--token-store", "secrets/t.json", "--out", "tx.jsonl", "--quiet"]) == 0
        assert not (tmp_path / "users.csv.tokens.json").exists()
        kept = json.loads((tmp_path / "secrets/t.json").read_text())["tokens"]
        assert list(kept) == [token_key(access, refresh)]
        # nothing secret anywhere else the export wrote
        for written in ("tx.jsonl", "tx.jsonl.report.json"):
            text = (tmp_path / written).read_text()
            assert access not in text and refresh not in text
            assert kept[token_key(access, refresh)]["refresh_token"] not in text


async def test_on_token_sees_each_rotation_without_showing_secrets() -> None:
    async with OxlinSandbox(users=2, seed=43, transactions_per_account=5) as box, \
            new_client(box) as client:
        users = []
        for user in box.users:
            token = await client.as_user(user.email, user.password).tokens.get()
            users.append(ox.BulkUser.with_token(token.access_token, token.refresh_token))
        box.expire_tokens(clients=False)
        seen: list[tuple[str, ox.Token]] = []
        run_ = client.bulk_transactions(users, on_token=lambda u, t: seen.append((u.key, t)))
        async for _ in run_:
            pass
        assert run_.result is not None and run_.result.ok
        assert sorted(k for k, _ in seen) == sorted(u.key for u in users)
        for (_, token), user in zip(sorted(seen, key=lambda s: s[0]),
                                    sorted(users, key=lambda u: u.key), strict=True):
            assert token.refresh_token not in (None, user.refresh_token)
            assert token.access_token not in repr(token)
            assert str(token.refresh_token) not in repr(token)
            assert str(user.refresh_token) not in repr(user)


# --------------------------------------------------------------------------- identity
def test_token_users_are_keyed_by_their_tokens_not_their_line() -> None:
    a = ox.BulkUser.with_token("at_" + "a" * 30, "rt_" + "b" * 30)
    assert a.key == token_key("at_" + "a" * 30, "rt_" + "b" * 30)
    assert a.key.startswith("token:") and "b" * 30 not in a.key and "a" * 30 not in a.key
    # the refresh token names the pair: a new access token is still the same user
    assert ox.BulkUser.with_token("at_" + "c" * 30, "rt_" + "b" * 30).key == a.key
    assert ox.BulkUser.with_token("at_" + "a" * 30).key != a.key


def test_the_same_token_listed_twice_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    Path("users.csv").write_text("# tokens\n" + f"{'t' * 30},{'r' * 30}\n"
                                 + "jane@example.com,pw\n" + f"{'u' * 30},{'r' * 30}\n")
    rc = run(["export", "--sandbox", "--users", "users.csv", "--out", "tx.jsonl"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "users.csv:4:" in err and "listed twice (first on line 2)" in err
    assert "r" * 30 not in err and not Path("tx.jsonl").exists()


def _resume_with_edited_users(tmp_path: Path, box: OxlinSandbox, first: list[str],
                              second: list[str], args: list[str]) -> dict[str, Any]:
    """Run with the users file `first` (one bad line, so one user fails), then resume
    with `second` (reordered, edited); return the final report."""
    Path("users.csv").write_text("".join(first))
    cmd = ["export", *args, "--users", "users.csv", "--checkpoint", "CP", "--out",
           "tx.jsonl", "--quiet"]
    assert run(cmd) == 1
    Path("users.csv").write_text("".join(second))
    assert run([*cmd, "--resume"]) == 0
    return report_of(tmp_path / "tx.jsonl.report.json")


def test_resume_with_a_reordered_and_edited_file_of_token_users(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = OxlinSandbox(users=4, seed=44, transactions_per_account=12)
    with served(box):
        pairs = list(token_pairs(box).items())
        line = {email: f"{a},{r}\n" for email, (a, r) in pairs}
        emails = [email for email, _ in pairs]
        bogus = f"at_{'x' * 30},rt_{'y' * 30}\n"  # refused by the server: that user fails
        first = [line[emails[0]], bogus, line[emails[1]], line[emails[2]]]
        # the bogus line gone, a comment added, the order changed, a new user at the top
        second = [line[emails[3]], "# edited\n", line[emails[2]], line[emails[0]],
                  line[emails[1]]]
        report = _resume_with_edited_users(tmp_path, box, first, second,
                                           hosts(box, monkeypatch))
    keys = {email: token_key(*pair) for email, pair in pairs}
    assert_exact(read_jsonl(tmp_path / "tx.jsonl"), keyed(truth(box), keys))
    statuses = {r["user"]: r["status"] for r in report["results"]}
    assert statuses == {keys[emails[3]]: "done", keys[emails[2]]: "skipped",
                        keys[emails[0]]: "skipped", keys[emails[1]]: "skipped"}
    assert report["transactions"] == len(truth(box))  # the whole export, both runs


def test_resume_with_a_reordered_file_of_email_users(tmp_path: Path) -> None:
    box = OxlinSandbox(users=4, seed=45, transactions_per_account=12)
    line = {u.email: f"{u.email},{u.password}\n" for u in box.users}
    e = [u.email for u in box.users]
    first = ["email,password\n", line[e[0]], f"{e[1]},wrong-password\n", line[e[2]]]
    second = ["\ufeff# now in another order\n", "email,password\n", line[e[3]], line[e[1]],
              line[e[2]], line[e[0]]]
    report = _resume_with_edited_users(
        tmp_path, box, first, second,
        ["--sandbox", "--sandbox-users", "4", "--sandbox-seed", "45",
         "--sandbox-transactions", "12"])
    assert_exact(read_jsonl(tmp_path / "tx.jsonl"), truth(box))
    assert report["failed"] == 0 and report["transactions"] == len(truth(box))
    assert {r["user"]: r["status"] for r in report["results"]} == {
        e[3]: "done", e[1]: "done", e[2]: "skipped", e[0]: "skipped"}


def test_one_oxlin_user_under_two_keys_is_exported_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = OxlinSandbox(users=2, seed=47, transactions_per_account=10)
    with served(box):
        pairs = token_pairs(box)
        jane, bob = box.users
        # jane by e-mail and by token: one user, two keys
        Path("users.csv").write_text(f"{jane.email},{jane.password}\n"
                                     f"{bob.email},{bob.password}\n"
                                     + ",".join(pairs[jane.email]) + "\n")
        rc = run(["export", *hosts(box, monkeypatch), "--users", "users.csv",
                  "--out", "tx.jsonl", "--quiet"])
    assert rc == 1
    rows = read_jsonl(tmp_path / "tx.jsonl")
    report = report_of(tmp_path / "tx.jsonl.report.json")
    (failed,) = [r for r in report["results"] if r["status"] == "failed"]
    assert failed["error_type"] == "ArgumentError" and jane.id in failed["error"]
    owner = {jane.email, token_key(*pairs[jane.email])} - {failed["user"]}
    assert_exact(rows, keyed(truth(box), {jane.email: owner.pop(), bob.email: bob.email}))
