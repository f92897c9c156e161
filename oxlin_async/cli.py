"""The ``oxlin-async`` command line: ``export`` many users' transactions, or run a ``sandbox``.

Exit status: 0 when every user was exported, 1 when some failed (listed in the report
file), 2 for bad input, 130 when interrupted. Bad input is one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import enum
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from . import __version__
from ._client import OxlinClient
from ._export import FORMATS, Writer, format_of, open_writer
from ._filters import TransactionFilter
from ._postgres import is_url, redact
from ._retry import RetryPolicy
from .bulk import BulkResult, BulkUser, Checkpoint, Progress
from .environments import Environment
from .errors import ArgumentError, OxlinError
from .models import AccountType, TransactionOrigin, TransactionStatus


class InputError(Exception):
    """Bad input: reported as one line, exit status 2."""


# ------------------------------------------------------------------------------- inputs
def _user_of(where: str, number: int, fields: list[str]) -> BulkUser | None:
    """One line of the users file: a user, or None for a comment, a blank or a header."""
    if not fields or not any(fields) or fields[0].startswith("#"):
        return None
    if number == 1 and fields[0].lower() in ("email", "access_token"):
        return None
    if len(fields) > 2 or not fields[0] or (len(fields) == 2 and not fields[1]):
        raise InputError(f"{where}: expected 'email,password' or "
                         "'access_token[,refresh_token]'")
    if "@" in fields[0]:
        if len(fields) != 2:
            raise InputError(f"{where}: the e-mail {fields[0]} has no password")
        return BulkUser.with_password(fields[0], fields[1])
    return BulkUser.with_token(fields[0], fields[1] if len(fields) == 2 else None,
                               key=f"token#{number}")


def read_users(path: str) -> list[BulkUser]:
    """``email,password`` per line, or ``access_token[,refresh_token]``; ``#`` comments and
    blank lines are skipped, and a header line naming the columns is allowed."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = list(csv.reader(f))
    except OSError as exc:
        raise InputError(f"cannot read the users file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a UTF-8 CSV file: {exc}") from None
    users: list[BulkUser] = []
    seen: set[str] = set()
    for number, fields in enumerate(lines, 1):
        user = _user_of(f"{path}:{number}", number, [f.strip() for f in fields])
        if user is None:
            continue
        if user.key.casefold() in seen:
            raise InputError(f"{path}:{number}: {user.key} is listed twice")
        seen.add(user.key.casefold())
        users.append(user)
    if not users:
        raise InputError(f"{path}: no users in the file")
    return users


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _since(text: str) -> dt.date | dt.datetime:
    """A date (its start in Europe/Paris) or an ISO datetime with a time zone."""
    with contextlib.suppress(ValueError):
        return dt.date.fromisoformat(text)
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date or an ISO datetime with a time zone: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"the datetime {text!r} needs a time zone (e.g. Z)")
    return value


def _names(text: str) -> list[str]:
    return [s.strip().upper() for s in text.split(",") if s.strip()]


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


@attrs.frozen
class _FilterOption:
    """A `TransactionFilter` field as an option: ``--`` and its name with dashes."""

    name: str
    parse: Callable[[str], Any]  # text -> the value the filter takes
    invalid: str  # the message when the filter refuses it; ``{text!r}`` is the option's text
    metavar: str
    help: str | None = None
    aliases: tuple[str, ...] = ()  # earlier spellings, still accepted

    def type(self, text: str) -> Any:
        value = self.parse(text)
        try:
            TransactionFilter(**{self.name: value})  # the SDK's own check of this filter
        except ArgumentError:
            raise argparse.ArgumentTypeError(self.invalid.format(text=text)) from None
        return value


def _one_of(what: str, kind: type[enum.Enum]) -> str:
    return f"unknown {what} {{text!r}}; use {','.join(str(m.value) for m in kind)}"


_AMOUNT = "not an amount: {text!r}"
FILTER_OPTIONS = (
    _FilterOption("since", _since, "not a date or an ISO datetime: {text!r}", "DATE|DATETIME",
                  "only transactions imported since then (incremental runs)"),
    _FilterOption("start_date", _date, "not a date: {text!r}", "YYYY-MM-DD",
                  "transactions dated that day (Europe/Paris) or later"),
    _FilterOption("end_date", _date, "not a date: {text!r}", "YYYY-MM-DD",
                  "transactions dated that day (Europe/Paris) or earlier"),
    _FilterOption("min_amount", str, _AMOUNT, "AMOUNT", "amounts are signed: debits < 0"),
    _FilterOption("max_amount", str, _AMOUNT, "AMOUNT"),
    _FilterOption("amount", str, _AMOUNT, "AMOUNT", "exactly this amount"),
    _FilterOption("statuses", _names, _one_of("status", TransactionStatus), "S[,S...]",
                  "keep only these statuses (e.g. BOOKED,PENDING)", ("--status",)),
    _FilterOption("excluded_statuses", _names, _one_of("status", TransactionStatus),
                  "S[,S...]", "drop these statuses", ("--exclude-status",)),
    _FilterOption("account_type", str.upper, _one_of("account type", AccountType), "TYPE"),
    _FilterOption("origin", str.upper, _one_of("origin", TransactionOrigin), "ORIGIN"),
    _FilterOption("category_id", str, "not a category id: {text!r}", "ID",
                  aliases=("--category",)),
)


# ------------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .testing._cli import DESCRIPTION, add_serve_arguments
    from .testing._cli import run as serve

    parser = _Parser(prog="oxlin-async", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"oxlin-async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_export(commands.add_parser(
        "export", help="export many users' transactions",
        description="Export every transaction of many users. Client credentials come from "
                    "OXLIN_CLIENT_ID and OXLIN_CLIENT_SECRET; without them (or with "
                    "--sandbox) an embedded emulator serves a seeded population."))
    sandbox = commands.add_parser("sandbox", description=DESCRIPTION,
                                  help="run the emulator (python -m oxlin_async.testing)")
    add_serve_arguments(sandbox)
    sandbox.set_defaults(handler=serve)
    return parser


def _add_export(export: argparse.ArgumentParser) -> None:
    export.add_argument("--users", metavar="FILE",
                        help="CSV: email,password per line, or access_token[,refresh_token] "
                             "(default with --sandbox: every seeded user)")
    export.add_argument("--out", required=True, metavar="FILE|URL",
                        help="the output file (Parquet: a file, or a folder of parts when "
                             "it ends with /), or a postgresql://user@host/db URL "
                             "(credentials also from the PG* variables)")
    export.add_argument("--format", choices=tuple(FORMATS),
                        help="default: postgresql for a postgresql:// URL, else from the "
                             "extension of --out (.csv, .db/.sqlite, .parquet), else jsonl")
    hosts = export.add_argument_group("hosts")
    hosts.add_argument("--env", choices=("sandbox", "production"), default="sandbox")
    hosts.add_argument("--auth-url")
    hosts.add_argument("--api-url")
    hosts.add_argument("--embed-url")
    filters = export.add_argument_group("filters (those of oxlin_async.TransactionFilter)")
    for option in FILTER_OPTIONS:
        filters.add_argument("--" + option.name.replace("_", "-"), *option.aliases,
                             dest=option.name, type=option.type, metavar=option.metavar,
                             help=option.help)
    _add_run_options(export)
    export.set_defaults(sandbox_users=20, handler=export_command)


def _add_run_options(export: argparse.ArgumentParser) -> None:
    from .testing._cli import add_sandbox_arguments

    run = export.add_argument_group("run")
    run.add_argument("--concurrency", type=_positive, default=32,
                     help="requests in flight at once (default 32)")
    run.add_argument("--per-user-concurrency", type=_positive, default=4)
    run.add_argument("--max-retries", type=_count, default=RetryPolicy().max_retries,
                     metavar="N", help="retries of a failed request before its user fails "
                                       f"(default {RetryPolicy().max_retries})")
    run.add_argument("--checkpoint", metavar="FILE",
                     help="record finished users and accounts here")
    run.add_argument("--resume", action="store_true",
                     help="continue from the checkpoint (default FILE: OUT.checkpoint)")
    run.add_argument("--report", metavar="FILE",
                     help="per-user results and failures (default: OUT.report.json)")
    run.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    box = export.add_argument_group("embedded sandbox")
    box.add_argument("--sandbox", action="store_true",
                     help="export from an embedded emulator (the default without credentials)")
    add_sandbox_arguments(box, prefix="sandbox-")


# ------------------------------------------------------------------------------- export
@attrs.frozen
class _Plan:
    """An export's inputs, all checked before the first request."""

    args: argparse.Namespace
    credentials: tuple[str, str] | None  # None: the embedded sandbox
    users: list[BulkUser] | None  # None: the sandbox's seeded users
    filter: TransactionFilter
    format: str
    report: str
    checkpoint: Checkpoint | None


def _environment(args: argparse.Namespace) -> Environment:
    urls = (args.auth_url, args.api_url, args.embed_url)
    if any(urls):
        if not all(urls):
            raise InputError("--auth-url, --api-url and --embed-url go together")
        try:
            return Environment(auth_url=args.auth_url, api_url=args.api_url,
                               embed_url=args.embed_url)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    return Environment.PRODUCTION if args.env == "production" else Environment.SANDBOX


def _filter(args: argparse.Namespace) -> TransactionFilter:
    if args.start_date and args.end_date and args.start_date > args.end_date:
        raise InputError("--start-date is after --end-date")
    given = {o.name: getattr(args, o.name) for o in FILTER_OPTIONS}
    return TransactionFilter(**{k: v for k, v in given.items() if v is not None})


def _check_writable(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"cannot write {path}: the folder {folder} is not writable")
    if os.path.isdir(path):
        raise InputError(f"cannot write {path}: it is a folder")


class _Display:
    """A live progress bar on stderr (rich, when installed and on a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        self._task: Any = None
        if not enabled:
            return
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar
        except ImportError:  # the cli extra is not installed: no bar
            return
        self._bar = Bar(TextColumn("users"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=True)

    def __enter__(self) -> _Display:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("export", total=None, stats="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, p: Progress) -> None:
        if self._bar is None:
            return
        rate = p.transactions / p.elapsed if p.elapsed > 0 else 0.0
        stats = (f"{p.transactions:,} tx  {rate:,.0f} tx/s  {p.requests:,} req  "
                 f"{p.retries:,} retries  {p.users_failed} failed")
        self._bar.update(self._task, total=p.users_total, completed=p.users_done + p.users_failed,
                         stats=stats)


def _write_report(path: str, result: BulkResult) -> None:
    report = {
        "users": len(result.users), "failed": len(result.failed),
        "transactions": result.transactions, "elapsed_seconds": round(result.elapsed, 3),
        "results": [{
            "user": u.user, "status": u.status, "user_id": u.user_id, "accounts": u.accounts,
            "accounts_skipped": u.accounts_skipped, "transactions": u.transactions,
            "pages": u.pages, "requests": u.requests, "retries": u.retries,
            "error_type": u.error_type, "error": u.error,
            "last_import_date": None if u.last_import_date is None
            else u.last_import_date.isoformat(),
        } for u in result.users],
    }
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, path)


def _local(out: str) -> str:
    """Where the files named after `out` go: beside it, or for a database URL, in the
    current folder, named after the database (never after the URL: it may hold a
    password)."""
    if is_url(out):
        database = redact(out).rsplit("/", 1)[-1] or "postgresql"
        return f"postgresql-{database}"
    return out.rstrip("/" + os.sep) or out


def _checkpoint(args: argparse.Namespace) -> Checkpoint | None:
    path = args.checkpoint or (_local(args.out) + ".checkpoint" if args.resume else None)
    if path is None:
        return None
    if os.path.exists(path) and not args.resume:
        raise InputError(f"the checkpoint {path} exists: pass --resume to continue that run, "
                         "or delete it")
    _check_writable(path)  # it is first written mid-run: fail now rather than then
    return Checkpoint(path)


def export_command(args: argparse.Namespace) -> int:
    """``oxlin-async export``: check every input (exit 2 before any request), then run."""
    client_id = os.environ.get("OXLIN_CLIENT_ID")
    client_secret = os.environ.get("OXLIN_CLIENT_SECRET")
    credentials = (client_id, client_secret) if client_id and client_secret else None
    if args.sandbox or credentials is None:
        if not args.sandbox and not args.quiet:
            print("oxlin-async: OXLIN_CLIENT_ID/OXLIN_CLIENT_SECRET are not set: exporting "
                  "from the embedded sandbox emulator", file=sys.stderr)
        credentials = None
    elif not args.users:
        raise InputError("--users is required unless --sandbox")
    transaction_filter = _filter(args)
    users = read_users(args.users) if args.users else None
    report = args.report or _local(args.out) + ".report.json"
    if not is_url(args.out):
        _check_writable(args.out.rstrip("/" + os.sep) or args.out)
    _check_writable(report)  # written at the very end
    plan = _Plan(args, credentials, users, transaction_filter, args.format or format_of(args.out),
                 report, _checkpoint(args))
    return asyncio.run(_export(plan))


async def _export(plan: _Plan) -> int:
    async with contextlib.AsyncExitStack() as stack:
        client, users = await _open_source(plan, stack)
        writer = _open_writer(plan, stack)
        result = await _run(plan, client, users, writer, stack)
    _write_report(plan.report, result)
    return _summarise(plan, result)


async def _open_source(plan: _Plan, stack: contextlib.AsyncExitStack
                       ) -> tuple[OxlinClient, list[BulkUser]]:
    """The client and the users: the given hosts, or an embedded sandbox started here."""
    args, users = plan.args, plan.users
    if plan.credentials is None:
        from .testing._cli import sandbox_from_args

        try:
            box = sandbox_from_args(args, "sandbox-")
        except ValueError as exc:
            raise InputError(str(exc)) from None
        await stack.enter_async_context(box)
        credentials, environment = (box.client_id, box.client_secret), box.environment
        if users is None:
            users = [BulkUser.with_password(u.email, u.password) for u in box.users]
    else:
        credentials, environment = plan.credentials, _environment(args)
    assert users is not None  # read_users ran unless the sandbox serves
    client = await stack.enter_async_context(OxlinClient(
        *credentials, environment=environment, max_concurrency=args.concurrency,
        retry=RetryPolicy(max_retries=args.max_retries)))
    return client, users


def _open_writer(plan: _Plan, stack: contextlib.AsyncExitStack) -> Writer:
    """The writer, closed on the way out; on resume it continues the partial output."""
    resume = plan.checkpoint is not None and plan.args.resume
    try:
        writer = open_writer(
            plan.format, plan.args.out,
            resume_offset=int(plan.checkpoint.last_extra.get("offset", 0))
            if plan.checkpoint is not None and resume else None,
            finished=plan.checkpoint.accounts if plan.checkpoint is not None and resume
            else None)
    except sqlite3.DatabaseError as exc:
        raise InputError(f"cannot use {plan.args.out} as an SQLite database: {exc}") from None
    except ValueError as exc:  # a missing extra, an unreachable database
        raise InputError(str(exc)) from None
    stack.callback(writer.close)
    if resume and plan.checkpoint is not None:
        writer.resume(plan.checkpoint)
    return writer


async def _run(plan: _Plan, client: OxlinClient, users: list[BulkUser], writer: Writer,
               stack: contextlib.AsyncExitStack) -> BulkResult:
    """Fetch every page into the writer, then make its output complete."""
    if plan.checkpoint is not None:
        stack.callback(plan.checkpoint.close)
    args = plan.args
    display = stack.enter_context(_Display(sys.stderr.isatty() and not args.quiet))
    run = client.bulk_transactions(
        users, filter=plan.filter, concurrency=args.concurrency,
        per_user_concurrency=args.per_user_concurrency, checkpoint=plan.checkpoint,
        checkpoint_extra=writer.commit, on_progress=display.update,
        on_user_done=writer.user_done)
    async for batch in run:
        writer.write(batch)
    assert run.result is not None  # set once the iteration is over
    writer.record_users(run.result.users)
    writer.commit()
    writer.finish()
    return run.result


def _summarise(plan: _Plan, result: BulkResult) -> int:
    """One line (and one per failed user) on stderr; the exit status."""
    if not plan.args.quiet:
        print(f"exported {result.transactions:,} transactions of "
              f"{len(result.users) - len(result.failed)}/{len(result.users)} users to "
              f"{redact(plan.args.out) if is_url(plan.args.out) else plan.args.out} in "
              f"{result.elapsed:.1f}s", file=sys.stderr)
        for failed in result.failed:
            print(f"  failed: {failed.user}: {failed.error_type}: {failed.error}",
                  file=sys.stderr)
        if result.failed:
            print(f"report: {plan.report}", file=sys.stderr)
    return 1 if result.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except InputError as exc:
        print(f"oxlin-async: error: {exc}", file=sys.stderr)
        return 2
    except OxlinError as exc:
        print(f"oxlin-async: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"oxlin-async: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("oxlin-async: interrupted; the partial output is kept as .part "
              "(resume with --checkpoint/--resume)", file=sys.stderr)
        return 130
