"""The ``oxlin-async`` command line against the embedded emulator's ground truth.

Most runs call `oxlin_async.cli.main` in-process (it runs its own event loop, so from
plain sync tests); a few run ``python -m oxlin_async`` as a real process: the README
command, a run killed with SIGKILL and resumed, and the ``sandbox`` command. The seeded
population is deterministic, so an unstarted `OxlinSandbox` built here with the same
sizes and seed is the ground truth of the command's embedded one.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _helpers import (
    assert_exact,
    clean_env,
    in_tmp,
    lines_of,
    population,
    read_csv,
    read_jsonl,
    report_of,
    rows_to_truth,
    run,
    stop_export_when,
    truth,
)

# ----------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_tmp(tmp_path, monkeypatch)


# ------------------------------------------------------------------ the main command
def test_readme_command_as_a_process(tmp_path: Path) -> None:
    """``oxlin-async export --sandbox --out tx.jsonl``, nothing else."""
    done = subprocess.run([sys.executable, "-m", "oxlin_async", "export", "--sandbox",
                           "--out", "tx.jsonl"], cwd=tmp_path, env=clean_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert_exact(read_jsonl(tmp_path / "tx.jsonl"), truth(population()))
    assert not (tmp_path / "tx.jsonl.part").exists()
    report = report_of(tmp_path / "tx.jsonl.report.json")
    assert (report["users"], report["failed"], report["transactions"]) == (20, 0, 6000)
    assert {r["status"] for r in report["results"]} == {"done"}
    assert "exported 6,000 transactions of 20/20 users to tx.jsonl" in done.stderr
    assert "embedded sandbox" not in done.stderr  # asked for: no warning
    assert "Traceback" not in done.stderr


def test_without_credentials_it_says_it_uses_the_embedded_sandbox(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = run(["export", "--out", "tx.jsonl", "--sandbox-users", "3",
              "--sandbox-transactions", "5"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "OXLIN_CLIENT_ID/OXLIN_CLIENT_SECRET are not set" in err
    assert "embedded sandbox" in err
    assert_exact(read_jsonl(tmp_path / "tx.jsonl"), truth(population(3, transactions=5)))


def test_200_users_exact(tmp_path: Path) -> None:
    rc = run(["export", "--sandbox", "--sandbox-users", "200", "--sandbox-transactions", "20",
              "--sandbox-seed", "8", "--out", "tx.jsonl", "--quiet"])
    assert rc == 0
    assert_exact(read_jsonl(tmp_path / "tx.jsonl"), truth(population(200, 8, transactions=20)))
    report = report_of(tmp_path / "tx.jsonl.report.json")
    assert report["transactions"] == 12000 and report["failed"] == 0
    ids = {u.email: u.id for u in population(200, 8, transactions=20).users}
    assert {r["user"]: r["user_id"] for r in report["results"]} == ids


def test_200_users_exact_under_faults(tmp_path: Path) -> None:
    # Retry-After 0 on the injected 429/503 (1 s would pause the whole client each time),
    # and enough retries that no request runs out of them at a 10 % failure rate.
    rc = run(["export", "--sandbox", "--sandbox-users", "200", "--sandbox-transactions", "20",
              "--sandbox-seed", "9", "--sandbox-fault-rate", "0.1",
              "--sandbox-retry-after", "0", "--max-retries", "10", "--out", "tx.jsonl",
              "--quiet"])
    assert rc == 0, report_of(tmp_path / "tx.jsonl.report.json")["results"]
    assert_exact(read_jsonl(tmp_path / "tx.jsonl"), truth(population(200, 9, transactions=20)))
    report = report_of(tmp_path / "tx.jsonl.report.json")
    assert sum(r["retries"] for r in report["results"]) > 20


def test_exact_when_tokens_expire_mid_run(tmp_path: Path) -> None:
    # 2 s tokens and 600 ms per request, one request at a time per user: each user's
    # walk (token, accounts, user, 3 pages) outlives its first token.
    rc = run(["export", "--sandbox", "--sandbox-users", "200", "--sandbox-transactions", "20",
              "--sandbox-seed", "10", "--sandbox-token-lifetime", "2",
              "--sandbox-latency-ms", "600", "--per-user-concurrency", "1",
              "--concurrency", "200", "--out", "tx.jsonl", "--quiet"])
    report = report_of(tmp_path / "tx.jsonl.report.json")
    assert rc == 0, report["results"]
    assert_exact(read_jsonl(tmp_path / "tx.jsonl"), truth(population(200, 10, transactions=20)))
    for r in report["results"]:
        # more requests than one token + accounts + user + one per page: a renewal
        assert r["requests"] - r["retries"] > 3 + r["pages"], r


# ------------------------------------------------------------------------- formats
def test_csv(tmp_path: Path) -> None:
    assert run(["export", "--sandbox", "--sandbox-users", "5", "--sandbox-transactions", "30",
                "--sandbox-seed", "11", "--out", "tx.csv", "--quiet"]) == 0
    assert_exact(read_csv(tmp_path / "tx.csv"), truth(population(5, 11, transactions=30)))


def test_sqlite_twice_into_one_database(tmp_path: Path) -> None:
    box = population(6, 12, transactions=30)
    args = ["export", "--sandbox", "--sandbox-users", "6", "--sandbox-transactions", "30",
            "--sandbox-seed", "12", "--out", "tx.db", "--quiet"]
    assert run(args) == 0  # the extension picks the format
    assert run([*args, "--format", "sqlite"]) == 0  # again, into the same database
    db = sqlite3.connect(tmp_path / "tx.db")
    try:
        for table, key in (("users", "key"), ("accounts", "id"), ("transactions", "id")):
            pk = [row[1] for row in db.execute(f"PRAGMA table_info({table})") if row[5]]
            assert pk == [key], table
        got = rows_to_truth({"user": u, "id": i, "account_id": a, "amount": m}
                            for u, i, a, m in db.execute(
                                "SELECT user_key, id, account_id, amount FROM transactions"))
        assert_exact(got, truth(box))
        users = {k: (i, s) for k, i, s in db.execute("SELECT key, user_id, status FROM users")}
        assert users == {u.email: (u.id, "done") for u in box.users}
        accounts = db.execute("SELECT COUNT(*) FROM accounts").fetchone()[0]
        assert accounts == sum(len(box.state.data(int(u.id)).accounts) for u in box.users)
        runs = db.execute("SELECT status FROM export_runs").fetchall()
        assert runs and {s for (s,) in runs} == {"complete"}
    finally:
        db.close()


# ------------------------------------------------------------------- kill and resume


def test_killed_then_resumed(tmp_path: Path) -> None:
    args = ["export", "--sandbox", "--sandbox-users", "30", "--sandbox-seed", "13",
            "--sandbox-latency-ms", "30", "--concurrency", "2", "--checkpoint", "CP",
            "--out", "tx.jsonl", "--quiet"]
    status, _ = stop_export_when(args, tmp_path, lambda: lines_of(tmp_path / "CP") >= 6)
    assert status == -signal.SIGKILL
    assert not (tmp_path / "tx.jsonl").exists()
    assert (tmp_path / "tx.jsonl.part").exists()
    assert not (tmp_path / "tx.jsonl.report.json").exists()
    lines = (tmp_path / "CP").read_text().splitlines()
    assert 6 <= len(lines) < 30 * 4  # part way: 30 users x (3 accounts + 1)

    assert run([*args, "--resume", "--concurrency", "16"]) == 0
    assert not (tmp_path / "tx.jsonl.part").exists()
    assert_exact(read_jsonl(tmp_path / "tx.jsonl"), truth(population(30, 13)))
    report = report_of(tmp_path / "tx.jsonl.report.json")
    assert report["failed"] == 0
    skipped = sum(r["accounts_skipped"] + 3 * (r["status"] == "skipped")
                  for r in report["results"])
    assert skipped > 0  # it did resume, not start over


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_from_any_checkpoint_line_with_interleaved_pages(
        tmp_path: Path, fmt: str) -> None:
    """A kill just after checkpoint line K leaves the checkpoint's first K lines and the
    output's bytes up to line K's offset (the output is only appended to). Pages of
    several accounts interleave (3 pages per account), so the output at that point holds
    pages of accounts that are not finished: the resumed run must not duplicate them."""
    out = tmp_path / f"tx.{fmt}"
    args = ["export", "--sandbox", "--sandbox-users", "4", "--sandbox-seed", "14",
            "--sandbox-transactions", "1100", "--concurrency", "1", "--checkpoint", "CP",
            "--out", out.name, "--quiet"]
    want = truth(population(4, 14, transactions=1100))
    assert run(args) == 0
    full, lines = out.read_bytes(), (tmp_path / "CP").read_text().splitlines()
    read = read_jsonl if fmt == "jsonl" else read_csv
    assert_exact(read(out), want)

    # the account lines after which the output holds pages of unfinished accounts
    entries = [json.loads(line) for line in lines]
    dirty = []
    for k, entry in enumerate(entries, 1):
        if "account" not in entry:
            continue
        (tmp_path / "prefix").write_bytes(full[: entry["extra"]["offset"]])
        accounts = {(key[0], value[0]) for key, value in read(tmp_path / "prefix").items()}
        finished = {(e["user"], e["account"]) for e in entries[:k] if "account" in e}
        if accounts - finished:
            dirty.append(k)
    assert dirty, "no interleaving: the test would prove nothing"

    for k in (dirty[0], dirty[len(dirty) // 2]):
        # the state a SIGKILL right after line K leaves (plus a torn checkpoint line)
        offset = entries[k - 1]["extra"]["offset"]
        (tmp_path / f"{out.name}.part").write_bytes(full[:offset] + full[offset:][:100])
        out.unlink(missing_ok=True)
        (tmp_path / "CP").write_text("\n".join(lines[:k]) + '\n{"user": "us')
        assert run([*args, "--resume"]) == 0
        assert_exact(read(out), want)
    (tmp_path / "prefix").unlink()


# ------------------------------------------------------------------- failing users
def test_a_failing_user_is_reported_and_the_others_exported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    box = population(5, 15, transactions=20)
    good, wrong = box.users[:4], box.users[4]
    (tmp_path / "users.csv").write_text(
        "email,password\n" + "".join(f"{u.email},{u.password}\n" for u in good[:2])
        + f"{wrong.email},not-the-password\n"
        + "# a comment, and a malformed e-mail the API would refuse:\n"
        + "jane@localhost,whatever-pass\n\n"
        + "".join(f"{u.email},{u.password}\n" for u in good[2:]), encoding="utf-8")
    rc = run(["export", "--sandbox", "--sandbox-users", "5", "--sandbox-transactions", "20",
              "--sandbox-seed", "15", "--users", "users.csv", "--out", "tx.jsonl",
              "--report", "report.json"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert_exact(read_jsonl(tmp_path / "tx.jsonl"), truth(box, only=[u.email for u in good]))
    report = report_of(tmp_path / "report.json")
    assert report["users"] == 6 and report["failed"] == 2
    failed = {r["user"]: r for r in report["results"] if r["status"] == "failed"}
    assert set(failed) == {wrong.email, "jane@localhost"}
    assert failed[wrong.email]["error_type"] == "InvalidGrantError"
    assert "wrong username or password" in failed[wrong.email]["error"]
    assert failed["jane@localhost"]["error_type"] == "ArgumentError"
    assert "not-the-password" not in (tmp_path / "report.json").read_text()
    assert f"failed: {wrong.email}: InvalidGrantError" in err
    assert "report: report.json" in err


def test_resume_a_finished_run_that_had_failures(tmp_path: Path) -> None:
    box = population(4, 16, transactions=20)
    right = "".join(f"{u.email},{u.password}\n" for u in box.users)
    (tmp_path / "users.csv").write_text(right.replace(box.users[2].password, "wrong-pass"))
    args = ["export", "--sandbox", "--sandbox-users", "4", "--sandbox-transactions", "20",
            "--sandbox-seed", "16", "--users", "users.csv", "--checkpoint", "CP",
            "--out", "tx.jsonl", "--quiet"]
    assert run(args) == 1
    assert_exact(read_jsonl(tmp_path / "tx.jsonl"),
                 truth(box, only=[u.email for u in box.users if u != box.users[2]]))
    (tmp_path / "users.csv").write_text(right)  # the password is fixed: run it again
    assert run([*args, "--resume"]) == 0
    assert_exact(read_jsonl(tmp_path / "tx.jsonl"), truth(box))
    report = report_of(tmp_path / "tx.jsonl.report.json")
    assert [r["status"] for r in report["results"]] == ["skipped", "skipped", "done", "skipped"]


# ----------------------------------------------------------------------- bad input
def _users_file(text: str) -> list[str]:
    Path("users.csv").write_text(text, encoding="utf-8")
    return ["--users", "users.csv"]


BASE = ["export", "--sandbox", "--sandbox-users", "1", "--sandbox-transactions", "1"]

BAD_INPUT: dict[str, tuple[Any, str]] = {
    "missing users file": (lambda: ["--users", "nope.csv"], "cannot read the users file"),
    "e-mail without password": (lambda: _users_file("jane@example.com\n"), "has no password"),
    "three fields": (lambda: _users_file("jane@example.com,pw,extra\n"), "users.csv:1"),
    "empty users file": (lambda: _users_file("# nobody\n"), "no users"),
    "user listed twice": (lambda: _users_file("a@example.com,x\nA@example.com,y\n"),
                          "listed twice"),
    "bad date": (lambda: ["--start-date", "2025-13-01"], "not a date"),
    "start after end": (lambda: ["--start-date", "2025-02-01", "--end-date", "2025-01-01"],
                        "after"),
    "bad since": (lambda: ["--since", "last tuesday"], "--since"),
    "naive since": (lambda: ["--since", "2025-01-01T10:00:00"], "time zone"),
    "bad amount": (lambda: ["--min-amount", "lots"], "not an amount"),
    "bad status": (lambda: ["--status", "BOOKED,NOPE"], "unknown status"),
    "unknown format": (lambda: ["--format", "xml"], "invalid choice"),
    "concurrency 0": (lambda: ["--concurrency", "0"], "at least 1"),
    "bad fault rate": (lambda: ["--sandbox-fault-rate", "2"], "fault-rate"),
    "negative retry-after": (lambda: ["--sandbox-retry-after", "-1"], "negative"),
    "existing checkpoint": (lambda: (Path("CP").write_text(""), ["--checkpoint", "CP"])[1],
                            "--resume"),
    "report in a missing folder": (lambda: ["--report", "missing/report.json"],
                                   "does not exist"),
    "checkpoint in a missing folder": (lambda: ["--checkpoint", "missing/CP"],
                                       "does not exist"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    make, expected = BAD_INPUT[case]
    extra = make()
    before = set(os.listdir(tmp_path))
    rc = run([*BASE, *extra, "--out", "tx.jsonl"])
    captured = capsys.readouterr()
    assert rc == 2, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("oxlin-async"), lines
    assert expected in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert set(os.listdir(tmp_path)) == before  # no output, part, report or checkpoint


@pytest.mark.parametrize("out", ["missing/tx.jsonl", "folder", "file.txt/tx.jsonl",
                                 "not-a-db.sqlite"])
def test_bad_output_path(tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("a file, not a folder\n")
    (tmp_path / "not-a-db.sqlite").write_text("some text, not an SQLite database\n" * 100)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    rc = run([*BASE, "--out", out])
    captured = capsys.readouterr()
    assert rc == 2, captured.err
    assert len(captured.err.splitlines()) == 1, captured.err
    assert "Traceback" not in captured.err
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs a POSIX user that folder permissions apply to")
def test_unwritable_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc = run([*BASE, "--out", str(locked / "tx.jsonl")])
        err = capsys.readouterr().err
        assert rc == 2 and "not writable" in err and len(err.splitlines()) == 1
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


# ------------------------------------------------------------------ sandbox command
def test_sandbox_command_serves(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "oxlin_async", "sandbox", "--port", "0", "--users", "1"],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert process.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while not any(line.startswith("export OXLIN_CLIENT_ID=") for line in seen):
            assert time.monotonic() < deadline, seen
            line = process.stdout.readline()
            assert line, f"exited early: {seen} {process.stderr.read() if process.stderr else ''}"
            seen.append(line)
        assert seen[0].startswith("# Oxlin emulator serving on http://127.0.0.1:")
        assert ":0 " not in seen[0]  # the port it really got
        assert len(seen[-1].split("=")[1]) > 0  # "export OXLIN_CLIENT_ID=<id>"
    finally:
        process.terminate()
        process.wait(timeout=30)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_sandbox_is_an_ordinary_sub_command(capsys: pytest.CaptureFixture[str]) -> None:
    # The emulator's own options and checks, behind ``oxlin-async sandbox``.
    assert run(["sandbox", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: oxlin-async sandbox")
    for option in ("--port", "--host", "--users", "--fault-rate", "--testbank"):
        assert option in out
    assert run(["sandbox", "--port", "0", "--fault-rate", "2"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "fault-rate" in err, err
    assert run(["sandbox", "--users", "many"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--users" in err, err
    assert run(["--help"]) == 0
    assert "{export,sandbox,commit}" in capsys.readouterr().out


@pytest.mark.parametrize(("new", "old"), [
    (["--statuses", "PENDING"], ["--status", "PENDING"]),
    (["--excluded-statuses", "BOOKED"], ["--exclude-status", "BOOKED"]),
])
def test_filter_options_and_their_older_spellings(tmp_path: Path, new: list[str],
                                                  old: list[str]) -> None:
    box = population(3, 17, transactions=40)
    args = ["export", "--sandbox", "--sandbox-users", "3", "--sandbox-transactions", "40",
            "--sandbox-seed", "17", "--quiet"]
    assert run([*args, *new, "--out", "new.jsonl"]) == 0
    assert run([*args, *old, "--out", "old.jsonl"]) == 0
    if new[0] == "--statuses":
        want = truth(box, lambda t: t.status == "PENDING")
    else:
        want = truth(box, lambda t: t.status != "BOOKED")
    assert 0 < len(want) < len(truth(box))
    assert_exact(read_jsonl(tmp_path / "new.jsonl"), want)
    assert_exact(read_jsonl(tmp_path / "old.jsonl"), want)
