"""Writers for the export command: JSON Lines, CSV, SQLite.

JSON Lines and CSV go to ``<out>.part`` and are renamed to ``<out>`` only when the run
ends, so a partial file never looks complete; `commit()` flushes and returns the offset a
checkpoint records, and a resumed run truncates the partial file back to it and drops the
rows of accounts the checkpoint does not list as finished (pages of accounts are
interleaved, so the part before that offset may hold some pages of an unfinished account,
which the resumed run fetches again in full). SQLite upserts by primary key inside one
transaction per account, so re-runs never duplicate.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sqlite3
from collections.abc import Collection
from decimal import Decimal
from typing import Any

from .models import Account, Transaction

try:
    import orjson
except ImportError:  # pragma: no cover - exercised only without the "speed" extra
    orjson = None  # type: ignore[assignment]

COLUMNS = ("user", "account_id", "id", "date", "day", "amount", "currency", "label", "type",
           "origin", "status", "category_id", "import_date", "value_date", "booking_date",
           "notes")


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _number(value: Decimal) -> int | float | str:
    if value == value.to_integral_value():
        return int(value)
    # A float written by json is its shortest repr, exact for <= 15 significant digits.
    return float(value) if len(value.as_tuple().digits) <= 15 else str(value)


def row(user: str, tx: Transaction) -> dict[str, Any]:
    return {
        "user": user, "account_id": tx.account_id, "id": tx.id, "date": _iso(tx.date),
        "day": tx.day.isoformat(), "amount": tx.amount, "currency": tx.currency,
        "label": tx.label, "type": str(tx.type), "origin": str(tx.origin),
        "status": str(tx.status), "category_id": tx.category_id,
        "import_date": _iso(tx.import_date), "value_date": _iso(tx.value_date),
        "booking_date": _iso(tx.booking_date), "notes": tx.notes,
    }


class Writer:
    """The interface: write pages, commit at account boundaries, finish at the end."""

    path: str

    def write(self, user: str, account: Account, transactions: list[Transaction]) -> None:
        raise NotImplementedError

    def commit(self) -> dict[str, Any]:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _FileWriter(Writer):
    def __init__(self, path: str, *, resume_offset: int | None,
                 finished: Collection[tuple[str, str]] | None = None) -> None:
        self.path = path
        self.part = path + ".part"
        if resume_offset is not None and not os.path.exists(self.part) and os.path.exists(path):
            os.replace(path, self.part)  # continue a finished run that had failures
        if resume_offset is not None and finished is not None and os.path.exists(self.part):
            self._keep_finished(resume_offset, finished)
            resume_offset = os.path.getsize(self.part)
        mode = "r+b" if resume_offset is not None and os.path.exists(self.part) else "wb"
        self._raw = open(self.part, mode)  # noqa: SIM115 - closed in close()
        if mode == "r+b":
            self._raw.truncate(resume_offset)
            self._raw.seek(0, os.SEEK_END)
        self._out = io.TextIOWrapper(self._raw, encoding="utf-8", newline="")
        if self._raw.tell() == 0:
            self._header()

    def _header(self) -> None:
        pass

    def _keep_finished(self, offset: int, finished: Collection[tuple[str, str]]) -> None:
        """Rewrite the first `offset` bytes of the part file, keeping only the rows of
        `finished` (user, account id) pairs (and a header)."""
        tmp = self.part + ".tmp"
        with open(self.part, "rb") as raw_src, open(tmp, "wb") as raw_dst:
            src = io.TextIOWrapper(io.BufferedReader(_Prefix(raw_src, offset)),
                                   encoding="utf-8", newline="")
            dst = io.TextIOWrapper(raw_dst, encoding="utf-8", newline="")
            self._filter(src, dst, finished)
            dst.flush()
            dst.detach()
        os.replace(tmp, self.part)

    def _filter(self, src: io.TextIOWrapper, dst: io.TextIOWrapper,
                finished: Collection[tuple[str, str]]) -> None:
        raise NotImplementedError

    def commit(self) -> dict[str, Any]:
        self._out.flush()
        return {"offset": self._raw.tell()}

    def finish(self) -> None:
        self.close()
        os.replace(self.part, self.path)

    def close(self) -> None:
        if not self._out.closed:
            self._out.close()


class _Prefix(io.RawIOBase):
    """The first `size` bytes of a binary file, as a readable stream."""

    def __init__(self, f: Any, size: int) -> None:
        self._f, self._left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._f.read(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


class JsonLinesWriter(_FileWriter):
    def _filter(self, src: io.TextIOWrapper, dst: io.TextIOWrapper,
                finished: Collection[tuple[str, str]]) -> None:
        for line in src:
            try:
                record = json.loads(line)
                key = (record["user"], record["account_id"])
            except (ValueError, TypeError, KeyError):
                continue  # a torn line
            if key in finished:
                dst.write(line)

    def write(self, user: str, account: Account, transactions: list[Transaction]) -> None:
        if orjson is not None:
            # orjson writes aware datetimes, dates and str enums as `row` spells them,
            # and several times faster: this loop is most of an export's own CPU.
            lines = [orjson.dumps({
                "user": user, "account_id": tx.account_id, "id": tx.id, "date": tx.date,
                "day": tx.day, "amount": _number(tx.amount), "currency": tx.currency,
                "label": tx.label, "type": tx.type, "origin": tx.origin,
                "status": tx.status, "category_id": tx.category_id,
                "import_date": tx.import_date, "value_date": tx.value_date,
                "booking_date": tx.booking_date, "notes": tx.notes,
            }, option=orjson.OPT_APPEND_NEWLINE) for tx in transactions]
            self._out.write(b"".join(lines).decode())
            return
        dumps = json.dumps
        for tx in transactions:
            record = row(user, tx)
            record["amount"] = _number(tx.amount)
            self._out.write(dumps(record, ensure_ascii=False) + "\n")


class CsvWriter(_FileWriter):
    def __init__(self, path: str, *, resume_offset: int | None,
                 finished: Collection[tuple[str, str]] | None = None) -> None:
        self._csv: Any = None
        super().__init__(path, resume_offset=resume_offset, finished=finished)

    def _writer(self) -> Any:
        if self._csv is None:
            self._csv = csv.DictWriter(self._out, fieldnames=COLUMNS, lineterminator="\n")
        return self._csv

    def _header(self) -> None:
        self._writer().writeheader()

    def _filter(self, src: io.TextIOWrapper, dst: io.TextIOWrapper,
                finished: Collection[tuple[str, str]]) -> None:
        rows = csv.reader(src)
        out = csv.writer(dst, lineterminator="\n")
        header = next(rows, None)
        if header == list(COLUMNS):
            out.writerow(header)
            for fields in rows:
                if len(fields) == len(COLUMNS) and (fields[0], fields[1]) in finished:
                    out.writerow(fields)

    def write(self, user: str, account: Account, transactions: list[Transaction]) -> None:
        writer = self._writer()
        for tx in transactions:
            writer.writerow(row(user, tx))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    key TEXT PRIMARY KEY, user_id TEXT, status TEXT, error TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, user_key TEXT NOT NULL REFERENCES users(key), connection_id TEXT,
    name TEXT, type TEXT, status TEXT, currency TEXT, balance TEXT, balance_date TEXT);
CREATE TABLE IF NOT EXISTS transactions (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(id),
    user_key TEXT NOT NULL, date TEXT, day TEXT, amount TEXT NOT NULL, currency TEXT,
    label TEXT, type TEXT, origin TEXT, status TEXT, category_id TEXT, import_date TEXT,
    value_date TEXT, booking_date TEXT, notes TEXT);
CREATE TABLE IF NOT EXISTS export_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT, finished_at TEXT, status TEXT);
"""


class SqliteWriter(Writer):
    """Amounts are stored as exact decimal text; re-runs upsert by primary key."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path)
        try:
            self._db.executescript(_SCHEMA)
            cur = self._db.execute("INSERT INTO export_runs (started_at, status) VALUES (?, ?)",
                                   (dt.datetime.now(dt.timezone.utc).isoformat(), "running"))
        except sqlite3.Error:
            self._db.close()  # not a database of ours (some other file): leave nothing open
            raise
        self._run = cur.lastrowid
        self._db.commit()
        self._users: set[str] = set()

    def write(self, user: str, account: Account, transactions: list[Transaction]) -> None:
        db = self._db
        if user not in self._users:
            db.execute("INSERT INTO users (key, status) VALUES (?, 'partial') "
                       "ON CONFLICT(key) DO NOTHING", (user,))
            self._users.add(user)
        db.execute(
            "INSERT INTO accounts VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
            "name=excluded.name, status=excluded.status, balance=excluded.balance, "
            "balance_date=excluded.balance_date",
            (account.id, user, account.connection_id, account.name, str(account.type),
             str(account.status), account.currency, str(account.balance),
             _iso(account.balance_date)))
        db.executemany(
            "INSERT INTO transactions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET amount=excluded.amount, label=excluded.label, "
            "status=excluded.status, category_id=excluded.category_id, "
            "import_date=excluded.import_date, notes=excluded.notes",
            [(r["id"], r["account_id"], user, r["date"], r["day"], str(r["amount"]),
              r["currency"], r["label"], r["type"], r["origin"], r["status"], r["category_id"],
              r["import_date"], r["value_date"], r["booking_date"], r["notes"])
             for r in (row(user, tx) for tx in transactions)])

    def user_status(self, user: str, user_id: str | None, status: str,
                    error: str | None) -> None:
        self._db.execute(
            "INSERT INTO users VALUES (?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
            "user_id=excluded.user_id, status=excluded.status, error=excluded.error, "
            "updated_at=excluded.updated_at",
            (user, user_id, status, error, dt.datetime.now(dt.timezone.utc).isoformat()))

    def commit(self) -> dict[str, Any]:
        self._db.commit()
        return {}

    def finish(self) -> None:
        self._db.execute("UPDATE export_runs SET finished_at = ?, status = 'complete' "
                         "WHERE id = ?", (dt.datetime.now(dt.timezone.utc).isoformat(), self._run))
        self._db.commit()
        self.close()

    def close(self) -> None:
        self._db.close()


def open_writer(fmt: str, path: str, *, resume_offset: int | None,
                finished: Collection[tuple[str, str]] | None = None) -> Writer:
    """`finished`: on resume, the (user, account id) pairs whose rows the partial file
    keeps; the others are fetched again."""
    if fmt == "jsonl":
        return JsonLinesWriter(path, resume_offset=resume_offset, finished=finished)
    if fmt == "csv":
        return CsvWriter(path, resume_offset=resume_offset, finished=finished)
    if fmt == "sqlite":
        return SqliteWriter(path)
    raise ValueError(f"unknown format {fmt!r}")
