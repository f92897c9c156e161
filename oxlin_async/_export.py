"""Writers for the export command: JSON Lines, CSV, SQLite, each writing the row of
`oxlin_async._rows`.

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
import stat
from collections.abc import Callable, Collection, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from ._rows import ACCOUNT_KEY, COLUMNS, ROW, Column, Kind, encoder
from .models import Account, Transaction

if TYPE_CHECKING:
    from .bulk import UserReport

try:
    import orjson
except ImportError:  # pragma: no cover - exercised only without the "speed" extra
    orjson = None  # type: ignore[assignment]

class UnsafeOutputError(ValueError):
    """An output path that must not be replaced (a device, a pipe, a folder)."""


def safe_target(path: str) -> str:
    """The file to write for `path`: through a symlink, its target (the link stays a
    link); refused unless it is a regular file or does not exist yet. Outputs are
    written beside it and renamed over it, which would turn a device into a plain file
    or replace a link by a copy."""
    real = os.path.realpath(path)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return real
    if stat.S_ISDIR(mode):
        raise UnsafeOutputError(f"cannot write {path}: it is a folder")
    if not stat.S_ISREG(mode):
        raise UnsafeOutputError(f"cannot write {path}: not a regular file (a device, a pipe "
                                "or a socket), refusing to replace it")
    return real


def _iso(value: dt.datetime | dt.date) -> str:
    return value.isoformat()


def _number(value: Decimal) -> int | float | str:
    if value == value.to_integral_value():
        return int(value)
    # A float written by json is its shortest repr, exact for <= 15 significant digits.
    return float(value) if len(value.as_tuple().digits) <= 15 else str(value)


#: how each format spells the kinds of `ROW` values (a kind left out is written as is)
_TEXT: dict[Kind, Callable[[Any], Any]] = {
    Kind.ENUM: str, Kind.DECIMAL: str, Kind.INSTANT: _iso, Kind.DAY: _iso}
_JSON: dict[Kind, Callable[[Any], Any]] = {**_TEXT, Kind.DECIMAL: _number}
# orjson writes aware datetimes, dates and str enums as `_JSON` spells them.
_ORJSON: dict[Kind, Callable[[Any], Any]] = {Kind.DECIMAL: _number}


class Writer(Protocol):
    """Where an export goes: pages as they arrive, a commit at each account boundary
    (what it returns is recorded in the checkpoint), the users' results, then the end."""

    path: str

    def write(self, user: str, account: Account, transactions: list[Transaction]) -> None: ...

    def commit(self) -> dict[str, Any]: ...

    def record_users(self, results: Iterable[UserReport]) -> None:
        """Each user's outcome, at the end of the run (formats without a place for them
        leave them to the report file)."""

    def finish(self) -> None:
        """The run is over: make the output complete (and close it)."""

    def close(self) -> None:
        """Release the output, complete or not (after `finish`, does nothing)."""


class _FileWriter:
    """Shared by the writers of one text file, appended to and renamed at the end."""

    def __init__(self, path: str, *, resume_offset: int | None,
                 finished: Collection[tuple[str, str]] | None = None) -> None:
        self.path = path = safe_target(path)
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

    def record_users(self, results: Iterable[UserReport]) -> None:
        pass  # no place for them in the file: the report has them

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
                key = tuple(record[name] for name in ACCOUNT_KEY)
            except (ValueError, TypeError, KeyError):
                continue  # a torn line
            if key in finished:
                dst.write(line)

    def write(self, user: str, account: Account, transactions: list[Transaction]) -> None:
        if orjson is not None:
            # Several times faster than json.dumps: this loop is most of an export's CPU.
            dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
            lines = [dumps(dict(zip(COLUMNS, values, strict=True)), option=option)
                     for values in _orjson_rows(user, account, transactions)]
            self._out.write(b"".join(lines).decode())
            return
        for values in _json_rows(user, account, transactions):
            record = dict(zip(COLUMNS, values, strict=True))
            self._out.write(json.dumps(record, ensure_ascii=False) + "\n")


class CsvWriter(_FileWriter):
    def __init__(self, path: str, *, resume_offset: int | None,
                 finished: Collection[tuple[str, str]] | None = None) -> None:
        self._csv: Any = None
        super().__init__(path, resume_offset=resume_offset, finished=finished)

    def _writer(self) -> Any:
        if self._csv is None:
            self._csv = csv.writer(self._out, lineterminator="\n")
        return self._csv

    def _header(self) -> None:
        self._writer().writerow(COLUMNS)

    def _filter(self, src: io.TextIOWrapper, dst: io.TextIOWrapper,
                finished: Collection[tuple[str, str]]) -> None:
        rows = csv.reader(src)
        out = csv.writer(dst, lineterminator="\n")
        header = next(rows, None)
        key = [COLUMNS.index(name) for name in ACCOUNT_KEY]
        # the key as written: a neutralised cell (an e-mail starting with "-") included
        written = {tuple(_cell(v) if i in _TEXT_COLUMNS else v for i, v in zip(key, pair,
                                                                               strict=True))
                   for pair in finished}
        if header == list(COLUMNS):
            out.writerow(header)
            for fields in rows:
                if len(fields) == len(COLUMNS) and tuple(fields[i] for i in key) in written:
                    out.writerow(fields)

    def write(self, user: str, account: Account, transactions: list[Transaction]) -> None:
        rows = _text_rows(user, account, transactions)
        self._writer().writerows([[_cell(v) if i in _TEXT_COLUMNS else v
                                   for i, v in enumerate(values)] for values in rows])


#: the CSV columns a person or a bank writes freely (labels, notes...): neutralised
_TEXT_COLUMNS = frozenset(i for i, c in enumerate(ROW) if c.kind is Kind.TEXT)
#: what makes a spreadsheet read a cell as a formula (OWASP "CSV injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, prefixed with ``'`` (which the
    spreadsheet shows as text); every other cell as is. Only in CSV."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


_orjson_rows, _json_rows, _text_rows = encoder(_ORJSON), encoder(_JSON), encoder(_TEXT)


# The row's columns in SQLite: the keys first, with their constraints; the user's
# column keeps the name it has in databases written by earlier versions.
_SQL_NAMES = {"user": "user_key"}
_SQL_KEYS = ("id", "account_id", "user")
_SQL_CONSTRAINTS = {"id": "PRIMARY KEY", "account_id": "NOT NULL REFERENCES accounts(id)",
                    "user": "NOT NULL", "amount": "NOT NULL"}
_SQL_TYPES = dict.fromkeys(Kind, "TEXT")  # amounts as exact decimal text


def _keys_first(item: tuple[int, Column]) -> int:
    name = item[1].name
    return _SQL_KEYS.index(name) if name in _SQL_KEYS else len(_SQL_KEYS)


#: (position in ROW, name in SQLite) of the table's columns, in the table's order
_SQL_LAYOUT = [(i, _SQL_NAMES.get(c.name, c.name))
               for i, c in sorted(enumerate(ROW), key=_keys_first)]
_SQL_DEFINITIONS = ", ".join(
    " ".join(filter(None, (name, _SQL_TYPES[ROW[i].kind], _SQL_CONSTRAINTS.get(ROW[i].name))))
    for i, name in _SQL_LAYOUT)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS users (
    key TEXT PRIMARY KEY, user_id TEXT, status TEXT, error TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, user_key TEXT NOT NULL REFERENCES users(key), connection_id TEXT,
    name TEXT, type TEXT, status TEXT, currency TEXT, balance TEXT, balance_date TEXT);
CREATE TABLE IF NOT EXISTS transactions ({_SQL_DEFINITIONS});
CREATE TABLE IF NOT EXISTS export_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT, finished_at TEXT, status TEXT);
"""

# A re-run updates every column but the keys.
_UPSERT = (
    f"INSERT INTO transactions ({', '.join(name for _, name in _SQL_LAYOUT)}) "
    f"VALUES ({', '.join('?' * len(ROW))}) ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{name}=excluded.{name}" for i, name in _SQL_LAYOUT
                if ROW[i].name not in _SQL_KEYS))
_sql_rows = encoder(_TEXT)


class SqliteWriter:
    """Amounts are stored as exact decimal text; re-runs upsert by primary key."""

    def __init__(self, path: str) -> None:
        self.path = path = safe_target(path)
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
        db.executemany(_UPSERT, [[values[i] for i, _ in _SQL_LAYOUT]
                                 for values in _sql_rows(user, account, transactions)])

    def record_users(self, results: Iterable[UserReport]) -> None:
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        self._db.executemany(
            "INSERT INTO users VALUES (?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
            "user_id=COALESCE(excluded.user_id, users.user_id), status=excluded.status, "
            "error=excluded.error, updated_at=excluded.updated_at",
            # skipped: finished by an earlier run of this export (a resume), so done
            [(u.user, u.user_id, "done" if u.status == "skipped" else u.status, u.error, now)
             for u in results])

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


def _files(cls: type[JsonLinesWriter | CsvWriter]) -> Opener:
    def open_file(path: str, resume_offset: int | None,
                  finished: Collection[tuple[str, str]] | None) -> Writer:
        return cls(path, resume_offset=resume_offset, finished=finished)
    return open_file


def _sqlite(path: str, resume_offset: int | None,
            finished: Collection[tuple[str, str]] | None) -> Writer:
    return SqliteWriter(path)  # upserts: a resume needs neither offset nor accounts


#: open a writer: (path, resume offset, finished accounts) -> Writer
Opener = Callable[[str, "int | None", "Collection[tuple[str, str]] | None"], Writer]

#: the formats, by the name ``--format`` takes
FORMATS: dict[str, Opener] = {
    "jsonl": _files(JsonLinesWriter), "csv": _files(CsvWriter), "sqlite": _sqlite}
#: the format an output's extension implies (JSON Lines otherwise)
EXTENSIONS = {".jsonl": "jsonl", ".csv": "csv", ".sqlite": "sqlite", ".db": "sqlite",
              ".sqlite3": "sqlite"}


def format_of(path: str) -> str:
    return EXTENSIONS.get(os.path.splitext(path)[1].lower(), "jsonl")


def open_writer(fmt: str, path: str, *, resume_offset: int | None,
                finished: Collection[tuple[str, str]] | None = None) -> Writer:
    """`finished`: on resume, the (user, account id) pairs whose rows the partial file
    keeps; the others are fetched again."""
    try:
        opener = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}") from None
    return opener(path, resume_offset, finished)
