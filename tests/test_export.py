"""The export writers: every format writes the one row of `oxlin_async._rows`, and the
JSON Lines writer's orjson path writes the same JSON as its stdlib path."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

import oxlin_async._export as export
from oxlin_async._convert import structure
from oxlin_async._rows import COLUMNS
from oxlin_async.bulk import Batch, UserReport
from oxlin_async.models import Account, Transaction

BASE = {"id": "1", "account_id": "2", "currency": "EUR", "type": "DEBIT", "origin": "ORIGINAL",
        "status": "BOOKED", "category_id": "P", "date": 1639954800, "import_date": 1639998109}
ITEMS = [
    {**BASE, "amount": -79.99, "label": 'Télé "x"', "notes": "a\nb", "value_date": 1639954800},
    {**BASE, "id": "3", "amount": 1200, "label": "whole", "status": "NOT_YET_KNOWN"},
    {**BASE, "id": "4", "amount": 1234567890123.45, "label": "big", "booking_date": 0},
]

ACCOUNT = structure({
    "id": "2", "connection_id": "9", "name": "Compte", "type": "CHECKINGS", "status": "ACTIVE",
    "currency": "EUR", "balance": 10.5, "balance_date": 1639954800,
    "creation_date": 1639954800}, Account)


def lines(path: Path, writer_cls: type[export.JsonLinesWriter]) -> list[object]:
    writer = writer_cls(str(path), resume_offset=None)
    writer.write(Batch("jane@example.com", ACCOUNT, [structure(i, Transaction) for i in ITEMS],
                       "7", {"P": "Pets"}))
    writer.finish()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.skipif(export.orjson is None, reason="needs the speed extra")
def test_orjson_and_stdlib_paths_write_the_same_records(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fast = lines(tmp_path / "fast.jsonl", export.JsonLinesWriter)
    monkeypatch.setattr(export, "orjson", None)
    slow = lines(tmp_path / "slow.jsonl", export.JsonLinesWriter)
    assert fast == slow
    # exact decimal text with two decimals (the row contract), never a JSON number
    assert [r["amount"] for r in fast] == [  # type: ignore[index]
        "-79.99", "1200.00", "1234567890123.45"]
    assert fast[0]["date"] == "2021-12-20"  # type: ignore[index]  # the Paris date
    assert fast[0]["category"] == "Pets"  # type: ignore[index]
    assert fast[1]["status"] == "NOT_YET_KNOWN"  # type: ignore[index]


# ----------------------------------------------------------------- one row, every format
def _write(fmt: str, path: Path) -> None:
    writer = export.open_writer(fmt, str(path), resume_offset=None)
    writer.write(Batch("jane@example.com", ACCOUNT, [structure(i, Transaction) for i in ITEMS],
                       "7", {"P": "Pets"}))
    writer.record_users([UserReport("jane@example.com", status="done", user_id="7")])
    writer.commit()
    writer.finish()


def test_every_format_writes_the_row_columns_in_order(tmp_path: Path) -> None:
    _write("jsonl", tmp_path / "tx.jsonl")
    records = [json.loads(line) for line in (tmp_path / "tx.jsonl").read_text().splitlines()]
    assert [list(r) for r in records] == [list(COLUMNS)] * len(ITEMS)

    _write("csv", tmp_path / "tx.csv")
    with (tmp_path / "tx.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(COLUMNS) and len(rows) == 1 + len(ITEMS)
    by_id = {r[COLUMNS.index("id")]: dict(zip(COLUMNS, r, strict=True)) for r in rows[1:]}
    assert by_id["1"]["amount"] == "-79.99" and by_id["1"]["notes"] == "a\nb"
    assert by_id["3"]["value_date"] == ""  # left out by the API: an empty cell
    assert by_id["1"]["date"] == "2021-12-20"  # the Paris date of 2021-12-19T23:00Z

    _write("sqlite", tmp_path / "tx.db")
    db = sqlite3.connect(tmp_path / "tx.db")
    try:
        table = [(name, kind, notnull, pk) for _, name, kind, notnull, _, pk
                 in db.execute("PRAGMA table_info(transactions)")]
        names = ["user_key" if n == "user" else n for n in COLUMNS]
        # the keys first (as in databases written by earlier versions), then the row's order
        # (and beside the amount's text, its integer minor units: sums are exact)
        assert [t[0] for t in table] == ["id", "account_id", "user_key"] + [
            n for n in names if n not in ("id", "account_id", "user_key")] + ["amount_minor"]
        assert {t[0] for t in table if t[3]} == {"id"}
        assert {t[0] for t in table if t[2]} == {"account_id", "user_key", "amount"}
        assert {t[1] for t in table if t[0] != "amount_minor"} == {"TEXT"}
        assert db.execute("SELECT SUM(amount_minor) FROM transactions").fetchone() == (
            -7999 + 120000 + 123456789012345,)
        # the same text as the CSV cells (where an empty cell is SQL NULL)
        stored = db.execute(f"SELECT {', '.join(names)} FROM transactions").fetchall()
        assert sorted(["" if v is None else v for v in r] for r in stored) == sorted(rows[1:])
        users = db.execute("SELECT key, user_id, status FROM users").fetchall()
        assert users == [("jane@example.com", "7", "done")]  # record_users
    finally:
        db.close()


def test_a_row_of_other_columns_is_an_edit_of_row_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A changed row contract: other orders, and values read from the account."""
    from oxlin_async import _rows
    from oxlin_async._rows import Column, Kind

    monkeypatch.setattr(_rows, "ROW", (
        Column("id", Kind.TEXT, "id"),
        Column("user", Kind.TEXT, _rows.USER),
        Column("connection_id", Kind.TEXT, "account.connection_id"),
        Column("amount", Kind.DECIMAL, "amount"),
        Column("account_type", Kind.ENUM, "account.type"),
        Column("notes", Kind.TEXT, "notes"),
    ))
    account = structure({
        "id": "2", "connection_id": "9", "name": "Compte", "type": "SAVINGS",
        "status": "ACTIVE", "currency": "EUR", "balance": 10.5,
        "balance_date": 1639954800, "creation_date": 1639954800}, Account)
    rows = _rows.encoder({Kind.DECIMAL: str, Kind.ENUM: str})(Batch(
        "jane@example.com", account, [structure(i, Transaction) for i in ITEMS[:2]]))
    assert rows == [["1", "jane@example.com", "9", "-79.99", "SAVINGS", "a\nb"],
                    ["3", "jane@example.com", "9", "1200", "SAVINGS", None]]
