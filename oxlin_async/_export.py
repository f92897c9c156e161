"""Writers for the export command: JSON Lines, CSV, SQLite, Parquet (`._parquet`) and
PostgreSQL (`._postgres`), each writing the row of `oxlin_async._rows`.

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
import operator
import os
import sqlite3
import stat
from collections.abc import Callable, Collection, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from ._parquet import ParquetWriter
from ._postgres import PostgresWriter, is_url
from ._rows import (
    ACCOUNT_KEY,
    COLUMNS,
    ROW,
    Column,
    Kind,
    Page,
    encoder,
    fixed,
    minor_units,
    record_encoder,
)

if TYPE_CHECKING:
    from .bulk import Checkpoint, UserReport

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


#: a date's or an instant's ISO text (a method call made in C: once per cell)
_iso: Callable[[dt.datetime | dt.date], str] = operator.methodcaller("isoformat")


#: how each format spells the kinds of `ROW` values (a kind left out is written as is):
#: amounts as exact decimal text with two decimals (``"-289.00"``), so that no reader
#: takes them for floats
_TEXT: dict[Kind, Callable[[Any], Any]] = {
    Kind.ENUM: str, Kind.DECIMAL: fixed, Kind.INSTANT: _iso, Kind.DAY: _iso}
_JSON = _TEXT
# orjson writes aware datetimes, dates and str enums as `_JSON` spells them.
_ORJSON: dict[Kind, Callable[[Any], Any]] = {Kind.DECIMAL: fixed}


class Writer(Protocol):
    """Where an export goes: pages as they arrive, a commit at each account boundary
    (what it returns is recorded in the checkpoint), the users' results, then the end."""

    path: str

    def write(self, page: Page) -> None: ...

    def commit(self) -> dict[str, Any]: ...

    def user_done(self, report: UserReport) -> None:
        """One user is over (done, failed or skipped), all its pages written."""

    def resume(self, checkpoint: Checkpoint) -> None:
        """Before a resumed run: forget from `checkpoint` what the output did not keep."""

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

    def user_done(self, report: UserReport) -> None:
        pass

    def resume(self, checkpoint: Checkpoint) -> None:
        pass  # the partial file keeps what the checkpoint lists

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

    def write(self, page: Page) -> None:
        if orjson is not None:
            # Several times faster than json.dumps: this loop is most of an export's CPU.
            # The page's lines go to the file as bytes, in one write (the text layer,
            # flushed first, holds nothing of ours: see `commit`). Each line is appended
            # to one buffer and dropped at once: keeping a page of orjson's bytes alive
            # (a list to join) costs several times the encoding itself (each is a fresh
            # malloc).
            dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
            lines = bytearray()
            for record in _orjson_records(page):
                lines += dumps(record, option=option)
            self._out.flush()
            self._raw.write(lines)
            return
        self._out.write("".join([json.dumps(record, ensure_ascii=False) + "\n"
                                 for record in _json_records(page)]))


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

    def write(self, page: Page) -> None:
        self._writer().writerows(_csv_rows(page))


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


_orjson_records, _json_records = record_encoder(_ORJSON), record_encoder(_JSON)
#: CSV: text cells neutralised as they are spelt
_csv_rows = encoder({**_TEXT, Kind.TEXT: _cell})


# The row's columns in SQLite: the keys first, with their constraints; the user's
# column keeps the name it has in databases written by earlier versions. Amounts are
# exact decimal text, and beside them `amount_minor`, integer minor units (cents), so
# that ``SUM(amount_minor)`` is exact (SQLite's SUM of text goes through floats).
_SQL_NAMES = {"user": "user_key"}
_SQL_KEYS = ("id", "account_id", "user")
_SQL_CONSTRAINTS = {"id": "PRIMARY KEY", "account_id": "NOT NULL REFERENCES accounts(id)",
                    "user": "NOT NULL", "amount": "NOT NULL"}
_SQL_TYPES = dict.fromkeys(Kind, "TEXT")
_AMOUNT = COLUMNS.index("amount")
_MINOR = ("amount_minor", "INTEGER")


def _keys_first(item: tuple[int, Column]) -> int:
    name = item[1].name
    return _SQL_KEYS.index(name) if name in _SQL_KEYS else len(_SQL_KEYS)


#: (position in ROW, name in SQLite) of the table's columns, in the table's order
_SQL_LAYOUT = [(i, _SQL_NAMES.get(c.name, c.name))
               for i, c in sorted(enumerate(ROW), key=_keys_first)]
_SQL_COLUMNS = [(name, _SQL_TYPES[ROW[i].kind]) for i, name in _SQL_LAYOUT] + [_MINOR]
_SQL_DEFINITIONS = ", ".join(
    " ".join(filter(None, (name, _SQL_TYPES[ROW[i].kind], _SQL_CONSTRAINTS.get(ROW[i].name))))
    for i, name in _SQL_LAYOUT) + ", " + " ".join(_MINOR)

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
_SQL_NAMES_ALL = [name for name, _ in _SQL_COLUMNS]
_UPSERT = (
    f"INSERT INTO transactions ({', '.join(_SQL_NAMES_ALL)}) "
    f"VALUES ({', '.join('?' * len(_SQL_NAMES_ALL))}) ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{name}=excluded.{name}" for name in _SQL_NAMES_ALL
                if name not in ("id", "account_id", "user_key")))
_sql_rows = encoder(_TEXT)


def _sql_values(page: Page) -> list[list[Any]]:
    return [[values[i] for i, _ in _SQL_LAYOUT] + [minor_units(Decimal(values[_AMOUNT]))]
            for values in _sql_rows(page)]


class SqliteWriter:
    """Amounts are stored as exact decimal text; re-runs upsert by primary key."""

    def __init__(self, path: str) -> None:
        self.path = path = safe_target(path)
        self._db = sqlite3.connect(path)
        try:
            self._db.executescript(_SCHEMA)
            # A database written by an earlier version: add the columns it lacks.
            have = {row[1] for row in self._db.execute("PRAGMA table_info(transactions)")}
            for name, kind in _SQL_COLUMNS:
                if name not in have:
                    self._db.execute(f"ALTER TABLE transactions ADD COLUMN {name} {kind}")
            cur = self._db.execute("INSERT INTO export_runs (started_at, status) VALUES (?, ?)",
                                   (dt.datetime.now(dt.timezone.utc).isoformat(), "running"))
        except sqlite3.Error:
            self._db.close()  # not a database of ours (some other file): leave nothing open
            raise
        self._run = cur.lastrowid
        self._db.commit()
        self._users: set[str] = set()

    def write(self, page: Page) -> None:
        db, user, account = self._db, page.user, page.account
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
        db.executemany(_UPSERT, _sql_values(page))

    def user_done(self, report: UserReport) -> None:
        pass

    def resume(self, checkpoint: Checkpoint) -> None:
        pass  # committed at each account: the database keeps what the checkpoint lists

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


def _parquet(path: str, resume_offset: int | None,
             finished: Collection[tuple[str, str]] | None) -> Writer:
    return ParquetWriter(path, resume_offset=resume_offset, finished=finished)


def _postgresql(url: str, resume_offset: int | None,
                finished: Collection[tuple[str, str]] | None) -> Writer:
    return PostgresWriter(url)  # upserts each user once over: see `resume`


def _sqlite(path: str, resume_offset: int | None,
            finished: Collection[tuple[str, str]] | None) -> Writer:
    return SqliteWriter(path)  # upserts: a resume needs neither offset nor accounts


#: open a writer: (path, resume offset, finished accounts) -> Writer
Opener = Callable[[str, "int | None", "Collection[tuple[str, str]] | None"], Writer]

#: the formats, by the name ``--format`` takes
FORMATS: dict[str, Opener] = {
    "jsonl": _files(JsonLinesWriter), "csv": _files(CsvWriter), "sqlite": _sqlite,
    "parquet": _parquet, "postgresql": _postgresql}
#: the format an output's extension implies (JSON Lines otherwise)
EXTENSIONS = {".jsonl": "jsonl", ".csv": "csv", ".sqlite": "sqlite", ".db": "sqlite",
              ".sqlite3": "sqlite", ".parquet": "parquet"}


def format_of(path: str) -> str:
    """The format `path` implies: a ``postgresql://`` URL, a folder (Parquet parts), else
    its extension."""
    if is_url(path):
        return "postgresql"
    if path.endswith(("/", os.sep)):
        return "parquet"  # a folder of parts
    return EXTENSIONS.get(os.path.splitext(path.rstrip("/" + os.sep))[1].lower(), "jsonl")


def open_writer(fmt: str, path: str, *, resume_offset: int | None,
                finished: Collection[tuple[str, str]] | None = None) -> Writer:
    """`finished`: on resume, the (user, account id) pairs whose rows the partial file
    keeps; the others are fetched again."""
    try:
        opener = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}") from None
    return opener(path, resume_offset, finished)
