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
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from . import __version__
from ._client import OxlinClient
from ._export import SqliteWriter, Writer, open_writer
from ._retry import RetryPolicy
from .bulk import BulkResult, BulkUser, Checkpoint, Progress
from .environments import Environment
from .errors import OxlinError
from .models import AccountType, TransactionStatus


class InputError(Exception):
    """Bad input: reported as one line, exit status 2."""


# ------------------------------------------------------------------------------- inputs
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
        fields = [f.strip() for f in fields]
        if not fields or not any(fields) or fields[0].startswith("#"):
            continue
        if number == 1 and fields[0].lower() in ("email", "access_token"):
            continue
        if len(fields) > 2 or not fields[0] or (len(fields) == 2 and not fields[1]):
            raise InputError(f"{path}:{number}: expected 'email,password' or "
                             "'access_token[,refresh_token]'")
        if "@" in fields[0]:
            if len(fields) != 2:
                raise InputError(f"{path}:{number}: the e-mail {fields[0]} has no password")
            user = BulkUser.with_password(fields[0], fields[1])
        else:
            user = BulkUser.with_token(fields[0], fields[1] if len(fields) == 2 else None,
                                       key=f"token#{number}")
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


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}")
    return value


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


def _statuses(text: str) -> list[str]:
    items = [s.strip().upper() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in TransactionStatus._value2member_map_]
    if bad or not items:
        allowed = ",".join(TransactionStatus._value2member_map_)
        raise argparse.ArgumentTypeError(f"unknown status {','.join(bad) or text!r}; "
                                         f"use {allowed}")
    return items


def _account_type(text: str) -> str:
    if text.upper() not in AccountType._value2member_map_:
        raise argparse.ArgumentTypeError(
            f"unknown account type {text!r}; use {', '.join(AccountType._value2member_map_)}")
    return text.upper()


# ------------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from .testing._cli import add_sandbox_arguments

    parser = _Parser(prog="oxlin-async", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"oxlin-async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    export = commands.add_parser(
        "export", help="export many users' transactions",
        description="Export every transaction of many users. Client credentials come from "
                    "OXLIN_CLIENT_ID and OXLIN_CLIENT_SECRET; without them (or with "
                    "--sandbox) an embedded emulator serves a seeded population.")
    export.add_argument("--users", metavar="FILE",
                        help="CSV: email,password per line, or access_token[,refresh_token] "
                             "(default with --sandbox: every seeded user)")
    export.add_argument("--out", required=True, metavar="FILE", help="the output file")
    export.add_argument("--format", choices=("jsonl", "csv", "sqlite"),
                        help="default: from the extension of --out, else jsonl")
    hosts = export.add_argument_group("hosts")
    hosts.add_argument("--env", choices=("sandbox", "production"), default="sandbox")
    hosts.add_argument("--auth-url")
    hosts.add_argument("--api-url")
    hosts.add_argument("--embed-url")
    filters = export.add_argument_group("filters")
    filters.add_argument("--since", type=_since, metavar="DATE|DATETIME",
                         help="only transactions imported since then (incremental runs)")
    filters.add_argument("--start-date", type=_date, metavar="YYYY-MM-DD")
    filters.add_argument("--end-date", type=_date, metavar="YYYY-MM-DD")
    filters.add_argument("--min-amount", type=_amount)
    filters.add_argument("--max-amount", type=_amount)
    filters.add_argument("--status", type=_statuses, metavar="S[,S...]",
                         help="keep only these statuses (e.g. BOOKED,PENDING)")
    filters.add_argument("--exclude-status", type=_statuses, metavar="S[,S...]")
    filters.add_argument("--account-type", type=_account_type)
    filters.add_argument("--category", metavar="ID")
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
    export.set_defaults(sandbox_users=20)

    sandbox = commands.add_parser("sandbox", add_help=False,
                                  help="run the emulator (python -m oxlin_async.testing)")
    sandbox.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


# ------------------------------------------------------------------------------- export
def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    ext = os.path.splitext(args.out)[1].lower()
    return {".csv": "csv", ".sqlite": "sqlite", ".db": "sqlite",
            ".sqlite3": "sqlite"}.get(ext, "jsonl")


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


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in {
        "start_date": args.start_date, "end_date": args.end_date,
        "min_amount": args.min_amount, "max_amount": args.max_amount,
        "statuses": args.status, "excluded_statuses": args.exclude_status,
        "account_type": args.account_type, "category_id": args.category,
        "since": args.since,
    }.items() if v is not None}


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


def _checkpoint(args: argparse.Namespace) -> Checkpoint | None:
    path = args.checkpoint or (args.out + ".checkpoint" if args.resume else None)
    if path is None:
        return None
    if os.path.exists(path) and not args.resume:
        raise InputError(f"the checkpoint {path} exists: pass --resume to continue that run, "
                         "or delete it")
    _check_writable(path)  # it is first written mid-run: fail now rather than then
    return Checkpoint(path)


async def _export(args: argparse.Namespace, users: list[BulkUser] | None,
                  client_id: str | None, client_secret: str | None,
                  checkpoint: Checkpoint | None) -> int:
    fmt = _format(args)
    resume_offset = (int(checkpoint.last_extra.get("offset", 0))
                     if checkpoint is not None and args.resume else None)

    async with contextlib.AsyncExitStack() as stack:
        if client_id is None or client_secret is None:
            from .testing._cli import sandbox_from_args

            try:
                box = sandbox_from_args(args, "sandbox-")
            except ValueError as exc:
                raise InputError(str(exc)) from None
            await stack.enter_async_context(box)
            client_id, client_secret, environment = box.client_id, box.client_secret, \
                box.environment
            if users is None:
                users = [BulkUser.with_password(u.email, u.password) for u in box.users]
        else:
            environment = _environment(args)
        assert users is not None
        client = await stack.enter_async_context(
            OxlinClient(client_id, client_secret, environment=environment,
                        max_concurrency=max(args.concurrency, 1),
                        retry=RetryPolicy(max_retries=args.max_retries)))
        try:
            writer: Writer = open_writer(
                fmt, args.out, resume_offset=resume_offset,
                finished=checkpoint.accounts if checkpoint is not None and args.resume
                else None)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"cannot use {args.out} as an SQLite database: {exc}") from None
        stack.callback(writer.close)
        if checkpoint is not None:
            stack.callback(checkpoint.close)
        display = stack.enter_context(_Display(sys.stderr.isatty() and not args.quiet))
        run = client.bulk_transactions(
            users, concurrency=args.concurrency, per_user_concurrency=args.per_user_concurrency,
            checkpoint=checkpoint, checkpoint_extra=writer.commit, on_progress=display.update,
            **_filters(args))
        async for batch in run:
            writer.write(batch.user, batch.account, batch.transactions)
        result = run.result
        assert result is not None
        if isinstance(writer, SqliteWriter):
            for u in result.users:
                writer.user_status(u.user, u.user_id, u.status, u.error)
        writer.commit()
        writer.finish()
    report_path = args.report or args.out + ".report.json"
    _write_report(report_path, result)
    if not args.quiet:
        print(f"exported {result.transactions:,} transactions of "
              f"{len(result.users) - len(result.failed)}/{len(result.users)} users to "
              f"{args.out} in {result.elapsed:.1f}s", file=sys.stderr)
        for failed in result.failed:
            print(f"  failed: {failed.user}: {failed.error_type}: {failed.error}",
                  file=sys.stderr)
        if result.failed:
            print(f"report: {report_path}", file=sys.stderr)
    return 1 if result.failed else 0


def export(args: argparse.Namespace) -> int:
    client_id = os.environ.get("OXLIN_CLIENT_ID") or None
    client_secret = os.environ.get("OXLIN_CLIENT_SECRET") or None
    if args.sandbox or not (client_id and client_secret):
        if not args.sandbox and not args.quiet:
            print("oxlin-async: OXLIN_CLIENT_ID/OXLIN_CLIENT_SECRET are not set: exporting "
                  "from the embedded sandbox emulator", file=sys.stderr)
        client_id = client_secret = None
    elif not args.users:
        raise InputError("--users is required unless --sandbox")
    if args.start_date and args.end_date and args.start_date > args.end_date:
        raise InputError("--start-date is after --end-date")
    users = read_users(args.users) if args.users else None
    _check_writable(args.out)
    _check_writable(args.report or args.out + ".report.json")  # written at the very end
    return asyncio.run(_export(args, users, client_id, client_secret, _checkpoint(args)))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sandbox"]:
        # Straight to the emulator's own parser: argparse's REMAINDER would not take
        # options that come first (``sandbox --port 0`` is "unrecognized arguments").
        from .testing._cli import main as sandbox_main

        return sandbox_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "sandbox":  # only if something came before the command
        from .testing._cli import main as sandbox_main

        return sandbox_main(args.rest)
    try:
        return export(args)
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
