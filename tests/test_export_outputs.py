"""Where an export writes, and what it leaves there.

Outputs are written beside the target and renamed over it, so only a regular file may
be replaced: a symlink is written through (it stays a link), a device, a pipe or a
folder is refused; an existing output needs ``--overwrite`` (or ``--resume``). A run
killed with SIGKILL and resumed, with the users file reordered in between, exports every
transaction exactly once in every format, and the report and SQLite's user statuses
cover the whole export. CSV text cells a spreadsheet would run as formulas start with
``'``.
"""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import stat
from pathlib import Path

import pytest
from _helpers import (
    assert_exact,
    in_tmp,
    lines_of,
    population,
    read_csv,
    read_jsonl,
    report_of,
    rows_to_truth,
    run,
    served,
    stop_export_when,
    truth,
)

from oxlin_async.bulk import Progress
from oxlin_async.cli import _Display, progress_stats

SMALL = ["export", "--sandbox", "--sandbox-users", "2", "--sandbox-transactions", "6",
         "--sandbox-seed", "51", "--quiet"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_tmp(tmp_path, monkeypatch)


def read_sqlite(path: Path) -> dict[tuple[str, str], tuple[str, object]]:
    db = sqlite3.connect(path)
    try:
        return rows_to_truth({"user": u, "id": i, "account_id": a, "amount": m}
                             for u, i, a, m in db.execute(
                                 "SELECT user_key, id, account_id, amount FROM transactions"))
    finally:
        db.close()


READ = {"jsonl": read_jsonl, "csv": read_csv, "sqlite": read_sqlite}


# ------------------------------------------------------------------------- symlinks
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "sqlite"])
def test_a_symlink_is_written_through(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "data").mkdir()
    link, report = tmp_path / f"tx.{fmt}", tmp_path / "report.json"
    link.symlink_to(tmp_path / "data" / f"real.{fmt}")  # dangling: the target is created
    report.symlink_to(tmp_path / "data" / "real-report.json")
    for extra in ([], ["--overwrite"]):
        assert run([*SMALL, "--out", link.name, "--report", report.name, *extra]) == 0
        assert link.is_symlink() and report.is_symlink()
        assert_exact(READ[fmt](tmp_path / "data" / f"real.{fmt}"),
                     truth(population(2, 51, transactions=6)))
        assert report_of(tmp_path / "data" / "real-report.json")["transactions"] == 36
        assert set(os.listdir(tmp_path / "data")) == {f"real.{fmt}", "real-report.json"}


# -------------------------------------------------------------------------- devices
@pytest.mark.parametrize("option", ["--out", "--report"])
@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_what_is_not_a_regular_file_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, kind: str) -> None:
    if kind == "device":
        target = "/dev/null"  # a character device every POSIX machine has
    elif kind == "fifo":
        os.mkfifo(tmp_path / "pipe")
        target = "pipe"
    else:
        (tmp_path / "folder").mkdir()
        target = "folder"
    before = sorted(os.listdir(tmp_path))
    args = ["--out", target] if option == "--out" else ["--out", "tx.jsonl", "--report", target]
    rc = run([*SMALL, *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and f"cannot write {target}" in err, err
    assert sorted(os.listdir(tmp_path)) == before
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    if kind == "fifo":
        assert stat.S_ISFIFO(os.stat(tmp_path / "pipe").st_mode)


def test_a_symlink_to_a_device_is_refused(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out.jsonl").symlink_to("/dev/null")
    assert run([*SMALL, "--out", "out.jsonl"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert (tmp_path / "out.jsonl").is_symlink()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# ---------------------------------------------------------------- existing outputs
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_existing_output_needs_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            fmt: str) -> None:
    out = tmp_path / f"tx.{fmt}"
    assert run([*SMALL, "--out", out.name]) == 0
    content, mtime = out.read_bytes(), out.stat().st_mtime_ns
    capsys.readouterr()
    assert run([*SMALL, "--out", out.name]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert out.read_bytes() == content and out.stat().st_mtime_ns == mtime
    assert run([*SMALL, "--out", out.name, "--overwrite"]) == 0
    assert_exact(READ[fmt](out), truth(population(2, 51, transactions=6)))


def test_sqlite_is_updated_in_place_and_overwrite_starts_afresh(tmp_path: Path) -> None:
    out = tmp_path / "tx.sqlite"
    assert run([*SMALL, "--out", out.name]) == 0
    assert run([*SMALL, "--out", out.name]) == 0  # upserts: the database is updated
    db = sqlite3.connect(out)
    assert db.execute("SELECT COUNT(*) FROM export_runs").fetchone()[0] == 2
    db.close()
    assert run([*SMALL, "--out", out.name, "--overwrite"]) == 0
    db = sqlite3.connect(out)
    assert db.execute("SELECT COUNT(*) FROM export_runs").fetchone()[0] == 1
    db.close()
    assert_exact(read_sqlite(out), truth(population(2, 51, transactions=6)))


# ------------------------------------------------------------- kill, reorder, resume


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "sqlite"])
def test_killed_then_resumed_with_a_reordered_users_file(tmp_path: Path, fmt: str) -> None:
    box = population(12, 52, transactions=100)
    users = [f"{u.email},{u.password}\n" for u in box.users]
    (tmp_path / "users.csv").write_text("email,password\n" + "".join(users))
    out = tmp_path / f"tx.{fmt}"
    args = ["export", "--sandbox", "--sandbox-users", "12", "--sandbox-seed", "52",
            "--sandbox-latency-ms", "30", "--concurrency", "2", "--users", "users.csv",
            "--checkpoint", "CP", "--out", out.name, "--quiet"]
    # some users done, some accounts of others
    status, _ = stop_export_when(args, tmp_path, lambda: lines_of(tmp_path / "CP") >= 10)
    assert status == -signal.SIGKILL
    assert not (tmp_path / f"{out.name}.report.json").exists()

    # another order, a comment in the middle: the keys are the e-mails, not the lines
    (tmp_path / "users.csv").write_text(
        "# reordered\nemail,password\n" + "".join(reversed(users[6:])) + "# rest\n"
        + "".join(users[:6]))
    assert run([*args, "--resume", "--concurrency", "8"]) == 0
    assert_exact(READ[fmt](out), truth(box))
    report = report_of(tmp_path / f"{out.name}.report.json")
    assert report["failed"] == 0 and report["transactions"] == 12 * 300  # the whole export
    assert report["transactions_this_run"] < 12 * 300  # it did resume, not start over
    for r in report["results"]:
        assert r["transactions"] == 300 and r["user_id"] is not None, r
    if fmt == "sqlite":
        db = sqlite3.connect(out)
        statuses = dict(db.execute("SELECT key, status FROM users").fetchall())
        ids = dict(db.execute("SELECT key, user_id FROM users").fetchall())
        db.close()
        assert statuses == {u.email: "done" for u in box.users}
        assert ids == {u.email: u.id for u in box.users}


# ---------------------------------------------------------------------- CSV formulas
def test_csv_cells_that_would_run_as_formulas_are_neutralised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = population(1, 53, transactions=6)
    labels = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "plain"]
    txs = list(box.state.data(int(box.users[0].id)).all_transactions())[:len(labels)]
    for tx, label in zip(txs, labels, strict=True):
        tx.label = label
    with served(box):
        monkeypatch.setenv("OXLIN_CLIENT_ID", box.client_id)
        monkeypatch.setenv("OXLIN_CLIENT_SECRET", box.client_secret)
        Path("users.csv").write_text(f"{box.users[0].email},{box.users[0].password}\n")
        assert run(["export", "--auth-url", box.auth_url, "--api-url", box.api_url,
                    "--embed-url", box.embed_url, "--users", "users.csv", "--out", "tx.csv",
                    "--quiet"]) == 0
    with open("tx.csv", encoding="utf-8", newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    for tx, label in zip(txs, labels, strict=True):
        want = label if label == "plain" else "'" + label
        assert rows[str(tx.id)]["label"] == want
    amounts = [r["amount"] for r in rows.values()]
    assert any(a.startswith("-") for a in amounts)  # numbers are left as numbers
    assert_exact(read_csv(tmp_path / "tx.csv"), truth(box))


# ------------------------------------------------------------------- progress bar
def test_the_progress_bar_fits_80_columns() -> None:
    from rich.console import Console

    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    display = _Display(True, console=console)
    with display:
        display.update(Progress(users_total=200_000, users_done=123_456, users_failed=7,
                                transactions=98_765_432, requests=1_000_000, retries=4_321,
                                elapsed=4354.0))
        console.print(display._bar.get_renderable())
    line = next(text for text in console.export_text().splitlines() if "users" in text)
    assert len(line) <= 80
    for shown in ("123463/200000 users", "1:12:34", "ETA", "98.8M tx", "4321 retries",
                  "7 failed"):
        assert shown in line, (shown, line)
    quiet = progress_stats(Progress(users_total=3, users_done=1, users_failed=0,
                                    transactions=10, requests=4, retries=0, elapsed=1.0))
    assert "retries" not in quiet and "failed" not in quiet


# ----------------------------------------------------------------------- interrupts
@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
def test_an_interrupted_sandbox_run_says_what_it_kept(tmp_path: Path, fmt: str) -> None:
    args = ["export", "--sandbox", "--sandbox-latency-ms", "50", "--concurrency", "4",
            "--checkpoint", "CP", "--out", f"tx.{fmt}", "--quiet"]
    status, err = stop_export_when(args, tmp_path, lambda: lines_of(tmp_path / "CP") >= 3,
                                   sig=signal.SIGINT)
    assert status == 130, err
    assert "Traceback" not in err and "Error handling request" not in err, err
    assert "--resume" in err
    if fmt == "sqlite":
        assert ".part" not in err and "tx.sqlite" in err
    else:
        assert "tx.jsonl.part" in err
