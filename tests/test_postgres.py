"""``--out postgresql://...`` against a real PostgreSQL server (tests/_postgres.py):
tables with primary keys and a numeric amount, every field equal to the ground truth,
re-runs and resumes without duplicates, a failed user leaving nothing half-written, and
credentials (from the URL or PG* variables) never shown."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _helpers import assert_rows, in_tmp, population, row_truth, run, stop_export_when
from _postgres import Server

from oxlin_async._rows import COLUMNS

NAMES = ", ".join("user_key" if n == "user" else n for n in COLUMNS)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_tmp(tmp_path, monkeypatch, "PGPASSWORD", "PGUSER", "PGHOST", "PGPORT", "PGDATABASE",
           "PGSERVICE", "PGPASSFILE")


def rows(server: Server, database: str) -> list[dict[str, Any]]:
    with server.connect(database) as db:
        return [dict(zip(COLUMNS, r, strict=True))
                for r in db.execute(f"SELECT {NAMES} FROM transactions").fetchall()]


def query(server: Server, database: str, sql: str) -> list[tuple[Any, ...]]:
    with server.connect(database) as db:
        return list(db.execute(sql).fetchall())


ARGS = ["export", "--sandbox", "--sandbox-users", "5", "--sandbox-transactions", "40",
        "--sandbox-seed", "51", "--quiet"]


def test_rows_equal_the_truth_and_a_rerun_adds_nothing(
        pg_server: Server, pg_database: str, tmp_path: Path) -> None:
    url = pg_server.url(pg_database)
    box = population(5, 51, transactions=40)
    want = row_truth(box)
    assert run([*ARGS, "--out", url]) == 0
    assert_rows(rows(pg_server, pg_database), want)
    keys = query(pg_server, pg_database, """
        SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc
        JOIN information_schema.key_column_usage kcu USING (constraint_name, table_name)
        WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = 'public'
        ORDER BY 1""")
    assert keys == [("accounts", "id"), ("transactions", "id"), ("users", "key")]
    types = dict(query(pg_server, pg_database, """
        SELECT column_name, data_type FROM information_schema.columns
        WHERE table_name = 'transactions'"""))
    assert (types["amount"], types["date"], types["import_date"]) == (
        "numeric", "date", "timestamp with time zone")
    users = dict(query(pg_server, pg_database, "SELECT key, status FROM users"))
    assert users == {u.email: "done" for u in box.users}
    (accounts,) = query(pg_server, pg_database, "SELECT COUNT(*) FROM accounts")
    assert accounts == (sum(len(box.state.data(int(u.id)).accounts) for u in box.users),)
    (total,) = query(pg_server, pg_database, "SELECT SUM(amount) FROM transactions")
    assert total == (sum(r["amount"] for r in want.values()),)  # numeric: exact

    assert run([*ARGS, "--out", url]) == 0  # again, into the same database
    assert_rows(rows(pg_server, pg_database), want)  # each row once
    report = json.loads(Path(f"postgresql-{pg_database}.report.json").read_text())
    assert report["failed"] == 0 and report["transactions"] == len(want)


def test_credentials_from_pg_variables_and_never_shown(
        pg_server: Server, pg_database: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    url = pg_server.url(pg_database, password=False)  # the password from PGPASSWORD
    assert run([*ARGS[:-1], "--checkpoint", "CP", "--out", url]) == 0
    assert_rows(rows(pg_server, pg_database), row_truth(population(5, 51, transactions=40)))
    monkeypatch.delenv("PGPASSWORD")

    assert run([*ARGS[:-1], "--out", pg_server.url(pg_database)]) == 0  # in the URL
    err = capsys.readouterr().err
    assert f"{pg_server.user}@{pg_server.host}:{pg_server.port}/{pg_database}" in err
    wrong = pg_server.url(pg_database).replace(pg_server.password, "Wrong-pw-9x")
    assert run([*ARGS, "--out", wrong]) == 2
    err += capsys.readouterr().err
    assert "password authentication failed" in err
    written = "".join(p.read_text(errors="replace") for p in tmp_path.iterdir())
    for secret in (pg_server.password, "Wrong-pw-9x"):
        assert secret not in err and secret not in written


def test_a_failed_user_leaves_nothing_half_written(
        pg_server: Server, pg_database: str, tmp_path: Path) -> None:
    box = population(30, 52, transactions=400)
    # faults and no retries: users fail part way through their accounts' pages
    rc = run(["export", "--sandbox", "--sandbox-users", "30", "--sandbox-seed", "52",
              "--sandbox-transactions", "400", "--sandbox-fault-rate", "0.04",
              "--max-retries", "0", "--concurrency", "4", "--report", "report.json",
              "--quiet", "--out", pg_server.url(pg_database)])
    assert rc == 1
    report = {r["user"]: r for r in json.loads(Path("report.json").read_text())["results"]}
    failed = {u for u, r in report.items() if r["status"] == "failed"}
    done = {u for u, r in report.items() if r["status"] == "done"}
    assert done and any(report[u]["pages"] > 0 for u in failed), "nothing to prove"
    assert_rows(rows(pg_server, pg_database), row_truth(box, only_users=done))
    owners = {u for (u,) in query(pg_server, pg_database, "SELECT user_key FROM accounts")}
    assert owners == done
    statuses = dict(query(pg_server, pg_database, "SELECT key, status FROM users"))
    assert statuses == {**dict.fromkeys(done, "done"), **dict.fromkeys(failed, "failed")}


def test_killed_then_resumed(pg_server: Server, pg_database: str, tmp_path: Path) -> None:
    url = pg_server.url(pg_database)
    args = ["export", "--sandbox", "--sandbox-users", "30", "--sandbox-seed", "53",
            "--sandbox-latency-ms", "30", "--concurrency", "2", "--checkpoint", "CP",
            "--out", url, "--quiet"]
    def some_users_stored() -> bool:
        return _has_users(pg_server, pg_database) and len(
            query(pg_server, pg_database, "SELECT key FROM users")) >= 3

    status, _ = stop_export_when(args, tmp_path, some_users_stored)
    assert status == -signal.SIGKILL
    want = row_truth(population(30, 53))
    # what the killed run left: whole users only
    per_user = Counter(u for (u,) in query(pg_server, pg_database,
                                           "SELECT user_key FROM transactions"))
    truth_per_user = Counter(user for user, _ in want)
    assert per_user and all(n == truth_per_user[u] for u, n in per_user.items())
    assert len(per_user) < 30

    assert run([*args, "--resume", "--concurrency", "16"]) == 0
    assert_rows(rows(pg_server, pg_database), want)
    report = json.loads(Path(f"postgresql-{pg_database}.report.json").read_text())
    skipped = [r for r in report["results"] if r["status"] == "skipped"]
    assert 3 <= len(skipped) < 30  # it did resume, not start over


def _has_users(server: Server, database: str) -> bool:
    return bool(query(server, database,
                      "SELECT 1 FROM information_schema.tables WHERE table_name = 'users'"))


def test_a_database_lost_mid_run_is_one_line_without_the_password(
        pg_server: Server, pg_database: str) -> None:
    from oxlin_async._convert import structure
    from oxlin_async._postgres import PostgresWriter
    from oxlin_async.bulk import Batch
    from oxlin_async.models import Account, Transaction

    writer = PostgresWriter(pg_server.url(pg_database))
    try:
        assert pg_server.password not in repr(writer.__dict__)
        with pg_server.connect() as admin:  # the server ends the writer's session
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (pg_database,))
        account = structure({
            "id": "2", "connection_id": "9", "name": "C", "type": "CHECKINGS",
            "status": "ACTIVE", "currency": "EUR", "balance": 1, "balance_date": 0,
            "creation_date": 0}, Account)
        tx = structure({"id": "1", "account_id": "2", "currency": "EUR", "type": "DEBIT",
                        "origin": "ORIGINAL", "status": "BOOKED", "category_id": "P",
                        "date": 0, "import_date": 0, "amount": -1, "label": "x"}, Transaction)
        with pytest.raises(OSError, match=f"PostgreSQL postgresql://{pg_server.user}@") as info:
            writer.write(Batch("jane@example.com", account, [tx]))
        assert pg_server.password not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__
    finally:
        writer.close()
