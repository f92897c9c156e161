"""The PostgreSQL writer (the ``postgresql`` extra: psycopg 3): ``--out postgresql://...``.

Tables ``users``, ``accounts`` and ``transactions`` (the row contract's columns, amounts
``numeric``, days ``date``, instants ``timestamptz``), each with a primary key. A user's
pages are COPYed into a temporary staging table as they arrive; when the user is over,
its rows are upserted from there in one transaction, with its accounts and its status.
So a re-run or a resume never duplicates a row, and a user that fails (or a run killed
mid-user) leaves nothing of that user half-written: on resume, the users the database
has as ``done`` are the ones skipped, whatever the checkpoint says of the others.

Credentials come from the URL or the usual ``PG*`` variables (libpq's); `redact` is how
the URL is ever shown.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._rows import ROW, Kind, Page, encoder
from .models import Account

if TYPE_CHECKING:
    from .bulk import Checkpoint, UserReport

SCHEMES = ("postgresql://", "postgres://")

_TYPES = {Kind.TEXT: "text", Kind.ENUM: "text", Kind.DECIMAL: "numeric",
          Kind.INSTANT: "timestamptz", Kind.DAY: "date"}
#: ``user`` is a reserved word in SQL: the column is ``user_key`` (as in SQLite)
_NAMES = [{"user": "user_key"}.get(c.name, c.name) for c in ROW]
_COLUMNS = ", ".join(_NAMES)
_DEFINITIONS = ", ".join(
    f"{name} {_TYPES[c.kind]}{'' if c.nullable else ' NOT NULL'}"
    + (" REFERENCES accounts(id)" if c.name == "account_id" else "")
    for name, c in zip(_NAMES, ROW, strict=True))

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS users (
    key text PRIMARY KEY, user_id text, status text NOT NULL, error text,
    updated_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    id text PRIMARY KEY, user_key text NOT NULL REFERENCES users(key), connection_id text,
    name text, type text, status text, currency text, balance numeric,
    balance_date timestamptz);
CREATE TABLE IF NOT EXISTS transactions ({_DEFINITIONS}, PRIMARY KEY (id));
CREATE TEMPORARY TABLE IF NOT EXISTS oxlin_staging (LIKE transactions);
"""
_KEYS = ("id",)
_UPSERT_TRANSACTIONS = (
    f"INSERT INTO transactions ({_COLUMNS}) "
    f"SELECT DISTINCT ON (id) {_COLUMNS} FROM oxlin_staging WHERE user_key = %s "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in _NAMES if n not in _KEYS))
_UPSERT_ACCOUNT = (
    "INSERT INTO accounts VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET user_key = excluded.user_key, "
    "connection_id = excluded.connection_id, name = excluded.name, type = excluded.type, "
    "status = excluded.status, currency = excluded.currency, balance = excluded.balance, "
    "balance_date = excluded.balance_date")
_UPSERT_USER = (
    "INSERT INTO users VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
    "user_id = coalesce(excluded.user_id, users.user_id), status = excluded.status, "
    "error = excluded.error, updated_at = excluded.updated_at")

# psycopg adapts Decimal, date and aware datetime itself; enums as their text.
_pg_rows = encoder({Kind.ENUM: str})


def is_url(out: str) -> bool:
    return out.startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL without its password (nor any query parameter, which may hold one)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{parts.username}@" if parts.username else "") + host + (
        f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ValueError("a postgresql:// output needs psycopg: "
                         "pip install 'oxlin-async[postgresql]'") from None
    return psycopg


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresWriter:
    def __init__(self, url: str) -> None:
        self._psycopg = psycopg = _psycopg()
        self.path = redact(url)
        try:
            self._db = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            # libpq's message names the host and the user, never the password
            raise ValueError(f"cannot connect to {self.path}: {_first_line(exc)}") from None
        try:
            with self._db.transaction():
                self._db.execute(_SCHEMA)
        except Exception:
            self._db.close()
            raise
        #: the accounts of each user in flight, upserted with its rows
        self._accounts: dict[str, dict[str, Account]] = {}
        self._user_ids: dict[str, str | None] = {}

    def _failed(self, exc: BaseException) -> OSError:
        """The database failed mid-run (server gone, disk full): one line, as for a file
        that cannot be written, without psycopg's exception (or its connection) kept."""
        return OSError(f"PostgreSQL {self.path}: {_first_line(exc)}")

    def write(self, page: Page) -> None:
        try:
            self._write(page)
        except self._psycopg.Error as exc:
            raise self._failed(exc) from None

    def user_done(self, report: UserReport) -> None:
        try:
            self._user_done(report)
        except self._psycopg.Error as exc:
            raise self._failed(exc) from None

    def _write(self, page: Page) -> None:
        self._accounts.setdefault(page.user, {})[page.account.id] = page.account
        self._user_ids[page.user] = page.user_id
        rows = _pg_rows(page)
        with self._db.cursor() as cur, cur.copy(
                f"COPY oxlin_staging ({_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _user_done(self, report: UserReport) -> None:
        """Upsert the user's rows in one transaction, or (failed) drop them."""
        accounts = self._accounts.pop(report.user, {})
        user_id = self._user_ids.pop(report.user, None) or report.user_id
        now = dt.datetime.now(dt.timezone.utc)
        with self._db.transaction():
            if report.status == "done":
                self._db.execute(_UPSERT_USER, (report.user, user_id, "done", None, now))
                with self._db.cursor() as cur:
                    cur.executemany(_UPSERT_ACCOUNT, [
                        (a.id, report.user, a.connection_id, a.name, str(a.type),
                         str(a.status), a.currency, a.balance, a.balance_date)
                        for a in accounts.values()])
                self._db.execute(_UPSERT_TRANSACTIONS, (report.user,))
            elif report.status == "failed":
                self._db.execute(
                    _UPSERT_USER + " WHERE users.status <> 'done'",
                    (report.user, user_id, "failed", report.error, now))
            self._db.execute("DELETE FROM oxlin_staging WHERE user_key = %s", (report.user,))

    def resume(self, checkpoint: Checkpoint) -> None:
        """Only the users committed here are finished, whatever the checkpoint lists."""
        done = {key for (key,) in self._db.execute(
            "SELECT key FROM users WHERE status = 'done'")}
        checkpoint.users &= done
        checkpoint.accounts = {a for a in checkpoint.accounts if a[0] in done}

    def commit(self) -> dict[str, Any]:
        return {}  # a user's rows are committed when the user is over (`user_done`)

    def record_users(self, results: Iterable[UserReport]) -> None:
        pass  # each user's status is written with its rows

    def finish(self) -> None:
        self.close()

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()


def open_postgres(url: str, resume_offset: int | None, finished: object) -> PostgresWriter:
    return PostgresWriter(url)
