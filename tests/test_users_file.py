"""The users file as spreadsheets and people write it, and what ``--users`` needs.

Read with `cli.read_users` (what the command runs first), and through the command for
the exit status and the one-line message: bad lines fail with ``file:line`` and exit 2
before any request; nothing secret is ever echoed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import assert_exact, in_tmp, population, read_jsonl, run, truth

import oxlin_async as ox
from oxlin_async import cli

TOKEN, REFRESH = "at_" + "A1b2-C3d4_" * 3, "rt_" + "Z9y8.X7w6~" * 3


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_tmp(tmp_path, monkeypatch)


def users_of(text: str | bytes) -> list[ox.BulkUser]:
    path = Path("users.csv")
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return cli.read_users(str(path))


def test_a_spreadsheet_file_bom_crlf_padded_rows() -> None:
    users = users_of("\ufeffemail,password\r\njane@example.com,pw 1\r\n"
                     f"{TOKEN},\r\n".encode())
    assert [u.key for u in users] == ["jane@example.com", ox.BulkUser.with_token(TOKEN).key]
    assert users[0].password == "pw 1"
    assert users[1].access_token == TOKEN and users[1].refresh_token is None


def test_a_file_that_is_not_utf8_names_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    Path("users.csv").write_bytes(b"jane@example.com,pw\nbob@example.com,caf\xe9-pass\n")
    assert run(["export", "--sandbox", "--users", "users.csv", "--out", "tx.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "users.csv:2: not UTF-8" in err and len(err.splitlines()) == 1


def test_a_header_after_comments_is_not_a_user() -> None:
    users = users_of("# exported 2025-01-01\n# by the ops team\n\naccess_token,refresh_token\n"
                     f"{TOKEN},{REFRESH}\n")
    assert len(users) == 1
    assert (users[0].access_token, users[0].refresh_token) == (TOKEN, REFRESH)


@pytest.mark.parametrize("password", ["  spaces around  ", " lead", "trail ", "a,b", 'q"uote',
                                      "#not-a-comment", "é€ unicode"])
def test_passwords_are_kept_exactly(password: str) -> None:
    quoted = '"' + password.replace('"', '""') + '"'
    (user,) = users_of(f"jane@example.com,{quoted}\n")
    assert user.password == password
    (user,) = users_of(f" jane@example.com ,{quoted}\n")  # the e-mail is trimmed
    assert user.key == "jane@example.com" and user.password == password


@pytest.mark.parametrize(("text", "where", "what"), [
    (f'"{TOKEN}\r\n",{REFRESH}\n', 1, "U+000D"),
    (f'jane@example.com,pw\n"{TOKEN}",\"{REFRESH}\nmore"\n', 2, "U+000A"),
    ("jane@example.com,pass\tword\n", 1, "U+0009"),
    ("# ok\njane@example.com,pass\x00word\n", 2, "U+0000"),
    ("jane@example.com,pw\nbob@example.com,p\x7fw\n", 2, "U+007F"),
])
def test_control_characters_are_refused_with_the_line(
        capsys: pytest.CaptureFixture[str], text: str, where: int, what: str) -> None:
    Path("users.csv").write_text(text, encoding="utf-8", newline="")
    rc = run(["export", "--sandbox", "--users", "users.csv", "--out", "tx.jsonl"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"users.csv:{where}: a control character ({what})" in err
    assert REFRESH not in err and "word" not in err
    assert not Path("tx.jsonl").exists()


@pytest.mark.parametrize(("text", "where", "message"), [
    ("jane.example.com,secret\n", 1, "neither an e-mail nor a token"),
    ("jane@example.com,pw\nhello world\n", 2, "neither an e-mail nor a token"),
    ("short\n", 1, "neither an e-mail nor a token"),
    (f"{TOKEN},not a token\n", 1, "neither an e-mail nor a token"),
    ("jane@example.com,pw,extra\n", 1, "expected 'email,password'"),
    ("jane@example.com,\n", 1, "has no password"),
    ('jane@example.com,"unclosed\n', 1, "not a valid CSV line"),
])
def test_malformed_lines_are_refused_up_front(
        capsys: pytest.CaptureFixture[str], text: str, where: int, message: str) -> None:
    Path("users.csv").write_text(text, encoding="utf-8")
    rc = run(["export", "--sandbox", "--users", "users.csv", "--out", "tx.jsonl"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"oxlin-async: error: users.csv:{where}: ") and message in err, err
    assert "secret" not in err and len(err.splitlines()) == 1


def test_users_without_client_credentials_names_both_variables(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    Path("users.csv").write_text("jane@example.com,pw\n")
    for given in ({}, {"OXLIN_CLIENT_ID": "id"}, {"OXLIN_CLIENT_SECRET": "secret"}):
        for name in ("OXLIN_CLIENT_ID", "OXLIN_CLIENT_SECRET"):
            monkeypatch.delenv(name, raising=False)
        for name, value in given.items():
            monkeypatch.setenv(name, value)
        rc = run(["export", "--users", "users.csv", "--out", "tx.jsonl"])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert "OXLIN_CLIENT_ID" in err and "OXLIN_CLIENT_SECRET" in err and "--sandbox" in err
        assert len(err.splitlines()) == 1 and not Path("tx.jsonl").exists()


def test_users_with_sandbox_need_no_credentials(tmp_path: Path) -> None:
    box = population(2, 46, transactions=8)
    Path("users.csv").write_text("\ufeff# two users\nemail,password\n"
                                 + "".join(f"{u.email},{u.password}\n" for u in box.users))
    assert run(["export", "--sandbox", "--sandbox-users", "2", "--sandbox-seed", "46",
                "--sandbox-transactions", "8", "--users", "users.csv", "--out", "tx.jsonl",
                "--quiet"]) == 0
    assert_exact(read_jsonl(tmp_path / "tx.jsonl"), truth(box))


def test_credentials_without_env_or_urls_must_say_which_hosts(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # --env sandbox is the vendor's hosted test platform, not the embedded emulator: a
    # run with real credentials must say which hosts it means.
    Path("users.csv").write_text("jane@example.com,pw\n")
    monkeypatch.setenv("OXLIN_CLIENT_ID", "id")
    monkeypatch.setenv("OXLIN_CLIENT_SECRET", "secret")
    monkeypatch.delenv("OXLIN_ENV", raising=False)
    rc = run(["export", "--users", "users.csv", "--out", "tx.jsonl"])
    err = capsys.readouterr().err
    assert rc == 2 and "--env production" in err and "--env sandbox" in err, err
    assert not Path("tx.jsonl").exists()
