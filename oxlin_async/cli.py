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
import logging
import os
import re
import sqlite3
import sys
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from . import __version__
from ._adaptive import Concurrency, figures
from ._argtypes import count, positive
from ._auth import Token
from ._client import OxlinClient
from ._export import FORMATS, UnsafeOutputError, Writer, format_of, open_writer, safe_target
from ._filters import TransactionFilter
from ._postgres import is_url, redact
from ._retry import RetryPolicy
from ._shards_cli import (
    add_commit_command,
    add_shard_arguments,
    concurrency_line,
    shard_command,
    wants_shards,
)
from .bulk import BulkResult, BulkUser, Checkpoint, Progress
from .environments import Environment
from .errors import ArgumentError, OxlinError
from .models import AccountType, TransactionOrigin, TransactionStatus


class InputError(Exception):
    """Bad input: reported as one line, exit status 2."""


# ------------------------------------------------------------------------------- inputs
#: RFC 6750 §2.1 b64token (what an access or refresh token may contain), at least 20
#: characters: a shorter word is a malformed line, not a token
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{20,}=*")
_HEADERS = ("email", "e-mail", "access_token")


def _control(text: str) -> str | None:
    """The first control character in `text` (CR, LF, tab, NUL...), as U+XXXX."""
    for char in text:
        if unicodedata.category(char) == "Cc":
            return f"U+{ord(char):04X}"
    return None


def _user_of(where: str, fields: list[str]) -> BulkUser:
    """One user line: ``email,password`` (the password kept exactly as written) or
    ``access_token[,refresh_token]``. Nothing in an error message is a secret."""
    while len(fields) > 1 and fields[-1] == "":
        fields = fields[:-1]  # a spreadsheet pads short rows with empty cells
    first = fields[0].strip()
    if len(fields) > 2 or not first:
        raise InputError(f"{where}: expected 'email,password' or "
                         "'access_token[,refresh_token]'")
    if "@" in first:
        if len(fields) != 2 or fields[1] == "":
            raise InputError(f"{where}: the e-mail {first} has no password")
        return BulkUser.with_password(first, fields[1])
    tokens = [f.strip() for f in fields]
    if not all(_TOKEN.fullmatch(t) for t in tokens):
        raise InputError(f"{where}: neither an e-mail nor a token (expected 'email,password' "
                         "or 'access_token[,refresh_token]'; a token is at least 20 letters, "
                         "digits or -._~+/)")
    return BulkUser.with_token(tokens[0], tokens[1] if len(tokens) == 2 else None)


def _not_utf8(path: str) -> int:
    """The first line of `path` that is not UTF-8 (the decoder reads ahead of the CSV)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1


def read_users(path: str) -> list[BulkUser]:
    """``email,password`` per line, or ``access_token[,refresh_token]``, as a spreadsheet
    saves it (a UTF-8 BOM, padded rows); ``#`` comments and blank lines are skipped, and a
    header line naming the columns may come first (after comments). Passwords are kept
    exactly; a control character anywhere is refused, with the line."""
    users: list[BulkUser] = []
    seen: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, strict=True)
            number = 0
            while True:
                number = reader.line_num + 1  # where the next record starts
                try:
                    fields = next(reader, None)
                except csv.Error as exc:
                    raise InputError(f"{path}:{number}: not a valid CSV line: {exc}") from None
                except UnicodeDecodeError:
                    raise InputError(f"{path}:{_not_utf8(path)}: not UTF-8 text (save the "
                                     "file as CSV UTF-8)") from None
                if fields is None:
                    break
                where = f"{path}:{number}"
                for column, field in enumerate(fields, 1):
                    bad = _control(field)
                    if bad is not None:
                        raise InputError(f"{where}: a control character ({bad}) in field "
                                         f"{column}")
                if not any(f.strip() for f in fields) or fields[0].lstrip().startswith("#"):
                    continue
                if fields[0].strip().lower() in _HEADERS:
                    continue  # a header (a spreadsheet may put comments above it)
                user = _user_of(where, fields)
                identity = user.key.casefold()
                if identity in seen:
                    raise InputError(f"{where}: {user.key} is listed twice "
                                     f"(first on line {seen[identity]})")
                seen[identity] = number
                users.append(user)
    except OSError as exc:
        raise InputError(f"cannot read the users file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 CSV file: {exc}") from None
    if not users:
        raise InputError(f"{path}: no users in the file")
    return users


class TokenStore:
    """The newest token pair of each token user, by user key: a JSON file (by default
    ``<users file>.tokens.json``) rewritten atomically, mode 0600, at each rotation.
    Refresh tokens are single-use, so the next run must start from these."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pairs: dict[str, dict[str, str | None]] = {}
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            self.pairs = {str(k): {"access_token": v["access_token"],
                                   "refresh_token": v.get("refresh_token")}
                          for k, v in data["tokens"].items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise InputError(f"{path}: not a token store written by oxlin-async") from None

    def apply(self, users: list[BulkUser]) -> list[BulkUser]:
        """The users, token users with their newest pair (keeping their key)."""
        out = []
        for user in users:
            pair = self.pairs.get(user.key) if user.access_token is not None else None
            if pair is not None and pair["access_token"]:
                user = BulkUser.with_token(str(pair["access_token"]), pair["refresh_token"],
                                           key=user.key)
            out.append(user)
        return out

    def keep(self, user: BulkUser, token: Token) -> None:
        if user.access_token is None:
            return  # a password user signs in again: nothing to keep
        self.pairs[user.key] = {"access_token": token.access_token,
                                "refresh_token": token.refresh_token}
        _write_private(self.path, json.dumps({"version": 1, "tokens": self.pairs}, indent=1))


def _write_private(path: str, text: str) -> None:
    """Replace `path` atomically with `text`, readable by its owner only (0600)."""
    path = safe_target(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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


def _concurrency(text: str) -> Concurrency:
    """``auto`` (adapt to what the API takes) or a number of requests in flight."""
    return "auto" if text.strip().lower() == "auto" else positive(text)


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
                  "transactions dated that day (Europe/Paris) or earlier: inclusive"),
    _FilterOption("min_amount", str, _AMOUNT, "AMOUNT",
                  "amount at least this; amounts are signed: debits < 0, credits > 0"),
    _FilterOption("max_amount", str, _AMOUNT, "AMOUNT",
                  "amount at most this (signed: --max-amount -100 keeps debits of 100 or more)"),
    _FilterOption("amount", str, _AMOUNT, "AMOUNT", "exactly this signed amount"),
    _FilterOption("statuses", _names, _one_of("status", TransactionStatus), "S[,S...]",
                  "keep only these statuses (e.g. BOOKED,PENDING)", ("--status",)),
    _FilterOption("excluded_statuses", _names, _one_of("status", TransactionStatus),
                  "S[,S...]", "drop these statuses", ("--exclude-status",)),
    _FilterOption("account_type", str.upper, _one_of("account type", AccountType), "TYPE",
                  "only accounts of this type: "
                  + ", ".join(str(m.value) for m in AccountType)),
    _FilterOption("origin", str.upper, _one_of("origin", TransactionOrigin), "ORIGIN",
                  "only this origin: " + ", ".join(str(m.value) for m in TransactionOrigin)),
    _FilterOption("category_id", str, "not a category id: {text!r}", "ID",
                  "only this category: its numeric id, as client.categories.list() or "
                  "GET /categories lists them (--category is the older spelling)",
                  aliases=("--category",)),
)


# ------------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


_DESCRIPTION = "The oxlin-async command line: export many users' transactions, or run a " \
    "local emulator of the Oxlin API."


def build_parser() -> argparse.ArgumentParser:
    from .testing._cli import DESCRIPTION, add_serve_arguments
    from .testing._cli import run as serve

    parser = _Parser(prog="oxlin-async", description=_DESCRIPTION,
                     epilog="Run 'oxlin-async COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"oxlin-async {__version__}")
    commands = parser.add_subparsers(dest="command", title="commands",
                                     parser_class=_Parser)
    _add_export(commands.add_parser(
        "export", help="export many users' transactions (JSON Lines, CSV, SQLite)",
        description="Export every transaction of many users. Client credentials come from "
                    "OXLIN_CLIENT_ID and OXLIN_CLIENT_SECRET, and --users is then required; "
                    "with --sandbox (or with neither credentials nor --users) an embedded "
                    "emulator serves a seeded population instead. Exit status: 0 all users "
                    "exported, 1 some failed (see the report), 2 bad input, 130 interrupted."))
    sandbox = commands.add_parser("sandbox", description=DESCRIPTION,
                                  help="serve the local emulator (python -m oxlin_async.testing)")
    add_serve_arguments(sandbox)
    sandbox.set_defaults(handler=serve)
    add_commit_command(commands)  # sharded exports (_shards_cli)
    parser.set_defaults(handler=None)
    return parser


def _add_export(export: argparse.ArgumentParser) -> None:
    export.add_argument("--users", metavar="FILE",
                        help="CSV: email,password per line, or access_token[,refresh_token] "
                             "(default with --sandbox: every seeded user); see --token-store")
    export.add_argument("--token-store", metavar="FILE",
                        help="where token users' newest token pairs are kept, mode 0600, "
                             "and read by the next run (refresh tokens are single-use; "
                             "default: USERS.tokens.json beside the users file)")
    export.add_argument("--out", required=True, metavar="FILE|URL",
                        help="the output file (Parquet: a file, or a folder of parts when "
                             "it ends with /), or a postgresql://user@host/db URL "
                             "(credentials also from the PG* variables); an existing file "
                             "is only replaced with --overwrite, continued with --resume "
                             "(SQLite and PostgreSQL: updated)")
    export.add_argument("--format", choices=tuple(FORMATS),
                        help="default: postgresql for a postgresql:// URL, else from the "
                             "extension of --out (.csv, .db/.sqlite, .parquet), else jsonl")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out (SQLite: start a new database)")
    hosts = export.add_argument_group(
        "hosts", "Where the real Oxlin API is. Not the same as --sandbox (the embedded "
                 "emulator, no real data).")
    hosts.add_argument("--env", choices=("sandbox", "production"),
                       help="the vendor's hosts: 'sandbox' is Oxlin's hosted test platform, "
                            "'production' real bank data; required with credentials unless "
                            "the URL options are given (or OXLIN_ENV is set)")
    hosts.add_argument("--auth-url", metavar="URL",
                       help="the OAuth server (POST /token), e.g. an emulator's; with "
                            "--api-url and --embed-url instead of --env (default: "
                            "$OXLIN_AUTH_URL, $OXLIN_API_URL, $OXLIN_EMBED_URL)")
    hosts.add_argument("--api-url", metavar="URL", help="the Accounts API base URL")
    hosts.add_argument("--embed-url", metavar="URL", help="the widget (embed) base URL")
    filters = export.add_argument_group("filters (those of oxlin_async.TransactionFilter)")
    for option in FILTER_OPTIONS:
        filters.add_argument("--" + option.name.replace("_", "-"), *option.aliases,
                             dest=option.name, type=option.type, metavar=option.metavar,
                             help=option.help)
    _add_run_options(export)
    add_shard_arguments(export)
    export.set_defaults(handler=export_command)


def _add_run_options(export: argparse.ArgumentParser) -> None:
    from .testing._cli import add_sandbox_arguments

    run = export.add_argument_group("run")
    run.add_argument("--concurrency", type=_concurrency, default="auto", metavar="auto|N",
                     help="requests in flight at once: 'auto' (the default) adapts to what "
                          "the API takes, backing off on 429 (up to 64); N pins it, and "
                          "fetches N users at once")
    run.add_argument("--per-user-concurrency", type=positive, default=4, metavar="N",
                     help="requests in flight at once for one user (default 4)")
    run.add_argument("--max-retries", type=count, default=RetryPolicy().max_retries,
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
    add_sandbox_arguments(box, prefix="sandbox-", users=20)


# ------------------------------------------------------------------------------- export
@attrs.frozen
class _Plan:
    """An export's inputs, all checked before the first request."""

    args: argparse.Namespace
    credentials: tuple[str, str] | None  # None: the embedded sandbox
    users: list[BulkUser] | None  # None: the sandbox's seeded users
    filter: TransactionFilter
    format: str
    out: str  # the file written (through a symlink, its target)
    report: str
    checkpoint: Checkpoint | None
    tokens: TokenStore | None
    #: what the checkpoint says earlier runs of this export delivered, by (user, account)
    earlier: dict[tuple[str, str], int] = attrs.field(factory=dict)


def _environment(args: argparse.Namespace) -> Environment:
    # the options, else OXLIN_AUTH_URL... (what ``oxlin-async sandbox`` prints to paste)
    urls: list[str] = [getattr(args, name) or os.environ.get(f"OXLIN_{name.upper()}", "")
                       for name in ("auth_url", "api_url", "embed_url")]
    if any(urls):
        if not all(urls):
            raise InputError("--auth-url, --api-url and --embed-url go together")
        try:
            return Environment(auth_url=urls[0], api_url=urls[1], embed_url=urls[2])
        except ValueError as exc:
            raise InputError(str(exc)) from None
    env = args.env or os.environ.get("OXLIN_ENV")
    if env not in ("sandbox", "production"):
        # Guessing would send production credentials to the test hosts, or the reverse.
        raise InputError("say which Oxlin hosts: --env production (real data) or --env "
                         "sandbox (Oxlin's hosted test platform), or set OXLIN_ENV")
    return Environment.PRODUCTION if env == "production" else Environment.SANDBOX


def _filter(args: argparse.Namespace) -> TransactionFilter:
    if args.start_date and args.end_date and args.start_date > args.end_date:
        raise InputError("--start-date is after --end-date")
    given = {o.name: getattr(args, o.name) for o in FILTER_OPTIONS}
    return TransactionFilter(**{k: v for k, v in given.items() if v is not None})


def _check_writable(path: str) -> str:
    """The file to write for `path` (see `safe_target`), its folder checked now."""
    try:
        real = safe_target(path)
    except UnsafeOutputError as exc:
        raise InputError(str(exc)) from None
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise InputError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"cannot write {path}: the folder {folder} is not writable")
    return real


class _Display:
    """A live progress bar on stderr (rich, when installed and on a terminal), fitting
    80 columns: users done, elapsed time, ETA, transactions; retries and failures once
    there are any."""

    def __init__(self, enabled: bool, console: Any = None) -> None:
        self._bar: Any = None
        self._task: Any = None
        if not enabled:
            return
        try:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar
        except ImportError:  # the cli extra is not installed: no bar
            return
        self._bar = Bar(BarColumn(bar_width=8), TextColumn("{task.fields[users]} users"),
                        TextColumn("{task.fields[elapsed]}"), TextColumn("ETA"),
                        TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                        console=console or Console(stderr=True), transient=True)

    def __enter__(self) -> _Display:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("export", total=None, users="0/?",
                                            elapsed="0:00:00", stats="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, p: Progress) -> None:
        if self._bar is None:
            return
        done = p.users_done + p.users_failed
        minutes, seconds = divmod(int(p.elapsed), 60)
        self._bar.update(self._task, total=p.users_total, completed=done,
                         users=f"{done}/{'?' if p.users_total is None else p.users_total}",
                         elapsed=f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}",
                         stats=progress_stats(p))


def progress_stats(p: Progress) -> str:
    """The numbers after the bar and the times: transactions, then retries and failures
    only once there are any (80 columns hold them all); once the API answers 429, the
    429 share and the requests allowed in flight (``429 1.2% @13``) instead of the
    retries."""
    parts = [f"{_short(p.transactions)} tx"]
    if p.throttled:
        # in the retries' place: most are the 429s' own, and 80 columns hold one of them
        parts.append(f"429 {p.throttle_rate:.1%} @{p.limit}")
    elif p.retries:
        parts.append(f"{_short(p.retries)} retries")
    if p.users_failed:
        parts.append(f"{p.users_failed} failed")
    return " ".join(parts)


def _short(n: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if n >= limit:
            return f"{n / limit:.1f}{suffix}"
    return f"{n:.0f}"


def _whole(plan: _Plan, result: BulkResult) -> list[dict[str, Any]]:
    """Each user's results over the whole export: what this run did plus, on a resume,
    what the checkpoint says earlier runs delivered."""
    before = plan.checkpoint.user_ids if plan.checkpoint is not None else {}
    rows = []
    for u in result.users:
        earlier = sum(n for (user, _), n in plan.earlier.items() if user == u.user)
        rows.append({
            "user": u.user, "status": u.status, "user_id": u.user_id or before.get(u.user),
            "accounts": u.accounts or sum(1 for (user, _) in plan.earlier if user == u.user),
            "accounts_skipped": u.accounts_skipped, "transactions": u.transactions + earlier,
            "transactions_this_run": u.transactions,
            "pages": u.pages, "requests": u.requests, "retries": u.retries,
            "error_type": u.error_type, "error": u.error,
            "last_import_date": None if u.last_import_date is None
            else u.last_import_date.isoformat()})
    return rows


def _write_report(plan: _Plan, result: BulkResult, rows: list[dict[str, Any]]) -> None:
    report = {
        "users": len(result.users), "failed": len(result.failed),
        "transactions": sum(r["transactions"] for r in rows),
        "transactions_this_run": result.transactions,
        "elapsed_seconds": round(result.elapsed, 3),
        "concurrency": _concurrency_figures(result), "results": rows}
    path = safe_target(plan.report)
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


def _credentials(args: argparse.Namespace) -> tuple[str, str] | None:
    """The client credentials, or None for the embedded sandbox."""
    client_id = os.environ.get("OXLIN_CLIENT_ID")
    client_secret = os.environ.get("OXLIN_CLIENT_SECRET")
    if args.sandbox:
        return None
    if client_id and client_secret:
        if not args.users:
            raise InputError("--users is required unless --sandbox")
        return client_id, client_secret
    if args.users:
        # Real users against the emulator would all fail as "wrong password".
        missing = " and ".join(n for n, v in (("OXLIN_CLIENT_ID", client_id),
                                               ("OXLIN_CLIENT_SECRET", client_secret)) if not v)
        raise InputError(f"--users needs OXLIN_CLIENT_ID and OXLIN_CLIENT_SECRET ({missing} "
                         "not set); add --sandbox to export those users from the emulator")
    if not args.quiet:
        print("oxlin-async: OXLIN_CLIENT_ID/OXLIN_CLIENT_SECRET are not set: exporting "
              "from the embedded sandbox emulator", file=sys.stderr)
    return None


def _outputs(args: argparse.Namespace, fmt: str) -> tuple[str, str]:
    """The output and report files to write, checked (see ``--overwrite``)."""
    report = _check_writable(args.report or _local(args.out) + ".report.json")  # at the end
    if is_url(args.out):
        return args.out, report
    out = _check_writable(args.out.rstrip("/" + os.sep) or args.out)
    if args.out.endswith(("/", os.sep)):
        out += os.sep  # a folder of Parquet parts
    if os.path.exists(out) and fmt != "sqlite" and not (args.overwrite or args.resume):
        raise InputError(f"{args.out} exists: pass --overwrite to replace it, or --resume "
                         "to continue the run that wrote it")
    return out, report


def export_command(args: argparse.Namespace) -> int:
    """``oxlin-async export``: check every input (exit 2 before any request), then run."""
    if wants_shards(args):
        return shard_command(args)
    credentials = _credentials(args)
    if credentials is not None:
        _environment(args)  # checked now, used once the run starts
    transaction_filter = _filter(args)
    users = read_users(args.users) if args.users else None
    tokens = None
    if users is not None and any(u.access_token is not None for u in users):
        tokens = TokenStore(_check_writable(args.token_store or args.users + ".tokens.json"))
        users = tokens.apply(users)
    fmt = args.format or format_of(args.out)
    out, report = _outputs(args, fmt)
    checkpoint = _checkpoint(args)
    earlier = dict(checkpoint.counts) if checkpoint is not None and args.resume else {}
    if args.overwrite and fmt == "sqlite" and not args.resume:
        for path in (out, out + "-journal", out + "-wal", out + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    plan = _Plan(args, credentials, users, transaction_filter, fmt, out, report, checkpoint,
                 tokens, earlier)
    return asyncio.run(_export(plan))


async def _export(plan: _Plan) -> int:
    async with contextlib.AsyncExitStack() as stack:
        client, users = await _open_source(plan, stack)
        writer = _open_writer(plan, stack)
        result = await _run(plan, client, users, writer, stack)
    rows = _whole(plan, result)
    _write_report(plan, result, rows)
    return _summarise(plan, result, rows)


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
        # An interrupt cancels the emulator's handlers mid-request: not worth a traceback.
        logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
        await stack.enter_async_context(box)
        credentials, environment = (box.client_id, box.client_secret), box.environment
        if users is None:
            users = [BulkUser.with_password(u.email, u.password) for u in box.users]
    else:
        credentials, environment = plan.credentials, _environment(args)
    assert users is not None  # read_users ran unless the sandbox serves
    client = await stack.enter_async_context(OxlinClient(
        *credentials, environment=environment,
        max_concurrency=64 if args.concurrency == "auto" else args.concurrency,
        retry=RetryPolicy(max_retries=args.max_retries)))
    return client, users


def _open_writer(plan: _Plan, stack: contextlib.AsyncExitStack) -> Writer:
    """The writer, closed on the way out; on resume it continues the partial output."""
    resume = plan.checkpoint is not None and plan.args.resume
    try:
        writer = open_writer(
            plan.format, plan.out,
            resume_offset=int(plan.checkpoint.last_extra.get("offset", 0))
            if plan.checkpoint is not None and resume else None,
            finished=plan.checkpoint.accounts if plan.checkpoint is not None and resume
            else None)
    except sqlite3.DatabaseError as exc:
        raise InputError(f"cannot use {plan.args.out} as an SQLite database: {exc}") from None
    except (ValueError, UnsafeOutputError) as exc:  # no extra, no database, unsafe path
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
        on_user_done=writer.user_done,
        on_token=plan.tokens.keep if plan.tokens is not None else None,
        models=False)  # the writers read rows only: no models built
    async for batch in run:
        writer.write(batch)
    assert run.result is not None  # set once the iteration is over
    if plan.checkpoint is not None:  # users an earlier run finished are known by id too
        for report in run.result.users:
            report.user_id = report.user_id or plan.checkpoint.user_ids.get(report.user)
    writer.record_users(run.result.users)
    writer.commit()
    writer.finish()
    return run.result


def _concurrency_figures(result: BulkResult) -> dict[str, Any] | None:
    """The report's account of the requests in flight and the 429s (README: "auto")."""
    return None if result.concurrency is None else figures(result.concurrency)


def _summarise(plan: _Plan, result: BulkResult, rows: list[dict[str, Any]]) -> int:
    """One line (and one per failed user) on stderr; the exit status."""
    if not plan.args.quiet:
        resumed = (f" ({result.transactions:,} in this run)"
                   if plan.checkpoint is not None and plan.args.resume else "")
        print(f"exported {sum(r['transactions'] for r in rows):,} transactions of "
              f"{len(result.users) - len(result.failed)}/{len(result.users)} users to "
              f"{redact(plan.args.out) if is_url(plan.args.out) else plan.args.out} in "
              f"{result.elapsed:.1f}s{resumed}", file=sys.stderr)
        if result.concurrency is not None and result.concurrency.attempts:
            print(concurrency_line(result.concurrency), file=sys.stderr)
        for failed in result.failed:
            print(f"  failed: {failed.user}: {failed.error_type}: {failed.error}",
                  file=sys.stderr)
        if result.failed:
            print(f"report: {plan.args.report or plan.args.out + '.report.json'}",
                  file=sys.stderr)
    return 1 if result.failed else 0


def _interrupted(args: argparse.Namespace) -> str:
    fmt = args.format or format_of(args.out)
    kept = (f"the rows written so far are in {args.out}" if fmt == "sqlite"
            else f"the partial output is kept in {args.out}.part")
    again = ("run the same command with --resume to continue"
             if args.checkpoint or args.resume
             else "a run with --checkpoint FILE can be resumed")
    return f"oxlin-async: interrupted; {kept}; {again}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.handler is None:  # bare ``oxlin-async``: what it can do
        parser.print_help(sys.stderr)
        return 2
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
        print(_interrupted(args) if args.command == "export" else "oxlin-async: interrupted",
              file=sys.stderr)
        return 130
