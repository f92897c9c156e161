"""Sharded exports: one export split into K parts that any number of processes or machines
write independently, then committed with a manifest.

    plan = shards.prepare("out/", shards.ShardPlan(shards=64, format="parquet",
                                                   users={"file": "/secrets/users.csv"}))
    shards.run_shard("out/", 7)        # anywhere: credentials from OXLIN_CLIENT_ID/SECRET
    shards.commit("out/")              # once every shard is over: _manifest.json, _SUCCESS

The plan (``_plan.json``): K, the format, the filters (``since`` among them), where the
users come from and which hosts; never a secret. A user belongs to shard
``shard_of(user.key, K)``, a stable hash of the key the export names users by, so a re-run
puts each user in the same shard; a different K needs a new directory.

A shard writes ``part-0000I-of-0000K.<ext>`` and ``part-0000I-of-0000K.report.json``: the
part under a temporary name (``_temporary/``), renamed when complete, then its report,
also renamed; the report is what says a part is complete, and a shard whose part and
report are there is skipped. A user's rows reach the part only once the user is over and
done (they wait in memory meanwhile: the users in flight, at most `concurrency`), so a
failed user leaves no rows; it is listed in the report, and ``retry_failed`` fetches the
failed users again into an additional part, ``part-0000I-of-0000K-retry1.<ext>``. The
PostgreSQL sink needs no parts: each shard upserts its users directly, and writes its
report. `commit` checks that every shard is there and no user is left failed, then writes
``_manifest.json`` (each part with its row count) and ``_SUCCESS``, last. Readers read
the manifest, not a listing of the directory.

A URL destination (``s3://...``, ``gs://...``, any fsspec protocol) is written through
fsspec (installed with the ``dask`` extra): each part is written locally, then put as one
object, and so are the reports, the manifest and ``_SUCCESS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._adaptive import Concurrency, ConcurrencyStats, check_concurrency, figures, throttling
from ._filters import WIRE, TransactionFilter
from ._postgres import redact
from .bulk import BulkResult, BulkUser, UserReport
from .errors import OxlinError

if TYPE_CHECKING:
    from ._auth import Token
    from ._client import OxlinClient
    from ._export import Writer
    from ._rows import Page

PLAN: Final = "_plan.json"
MANIFEST: Final = "_manifest.json"
SUCCESS: Final = "_SUCCESS"
TEMPORARY: Final = "_temporary"
_SCRATCH_TRIES: Final = 20
#: the formats a shard writes: files of parts, or rows upserted into PostgreSQL
FORMATS: Final = ("jsonl", "csv", "parquet", "sqlite", "postgresql")
_EXTENSIONS: Final = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "sqlite": "sqlite"}
_REPORT = re.compile(r"part-(\d{5,})-of-(\d{5,})(?:-retry(\d+))?\.report\.json")
#: the variables a worker reads its client credentials from
CREDENTIALS: Final = ("OXLIN_CLIENT_ID", "OXLIN_CLIENT_SECRET")


class ShardError(OxlinError):
    """A sharded export that cannot go on as asked: no plan or another plan in the
    directory, a shard index out of range, missing parts or failed users at commit, a
    worker without credentials. The message says what and where."""


def shard_of(key: str, shards: int) -> int:
    """The shard of the user whose `BulkUser.key` is `key`: the same on every machine and
    every run (a digest of the key, not Python's salted `hash`)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def part_stem(index: int, shards: int, retry: int = 0) -> str:
    """``part-00007-of-00064`` (``-retry1`` for the first retry of failed users)."""
    return f"part-{index:05d}-of-{shards:05d}" + (f"-retry{retry}" if retry else "")


# ----------------------------------------------------------------------------- the plan
def _has_password(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.password is not None or "password" in urllib.parse.parse_qs(parts.query)


def _filter_json(value: TransactionFilter) -> dict[str, str]:
    """The filter as {Python name: the value as the wire spells it}: epoch seconds for
    dates, text for amounts, comma-separated statuses."""
    query = value.to_query()
    return {name: query[wire] for name, (wire, _) in WIRE.items() if wire in query}


def _filter_of(data: Mapping[str, str]) -> TransactionFilter:
    values: dict[str, Any] = {}
    for name, text in data.items():
        if name in ("start_date", "end_date", "since"):
            values[name] = int(text)
        elif name in ("statuses", "excluded_statuses"):
            values[name] = text.split(",")
        elif name in ("min_amount", "max_amount", "amount"):
            values[name] = Decimal(text)
        else:
            values[name] = text
    return TransactionFilter.of(**values)


@attrs.frozen
class ShardPlan:
    """What every shard of one export shares, recorded as ``_plan.json``; never a secret.

    `users`: where each worker reads the users, ``{"file": PATH}`` (a users CSV, see the
    command line's ``--users``; the path as the workers see it) or ``{"sandbox": {...}}``
    (an embedded emulator's seeded population, its options), or ``{}`` when the caller
    passes the users to `export_shard` itself. `hosts`: ``{"env": "production"}`` or the
    three URLs (``auth_url``, ``api_url``, ``embed_url``); ``{}``: the worker's
    ``OXLIN_ENV``/``OXLIN_*_URL``. `output`: a ``postgresql://`` URL without a password
    (the workers' ``PGPASSWORD`` or ``~/.pgpass`` give it), for the PostgreSQL sink.
    """

    shards: int
    format: str = "jsonl"
    filter: TransactionFilter = attrs.field(factory=TransactionFilter)
    users: Mapping[str, Any] = attrs.field(factory=dict)
    hosts: Mapping[str, str] = attrs.field(factory=dict)
    output: str | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.shards, int) or isinstance(self.shards, bool) \
                or not 1 <= self.shards <= 99_999:
            raise ShardError(f"the number of shards must be an int from 1 to 99999, "
                             f"got {self.shards!r}")
        if self.format not in FORMATS:
            raise ShardError(f"shards are written as {', '.join(FORMATS)}, not "
                             f"{self.format!r}")
        if (self.format == "postgresql") != (self.output is not None):
            raise ShardError("the postgresql format takes the database URL as `output`, "
                             "and only it")
        if self.output is not None and _has_password(self.output):
            raise ShardError("the database URL holds a password, and the plan is written "
                             "down: give the password to every worker as PGPASSWORD or "
                             "in ~/.pgpass instead")
        for key in self.users:
            if key not in ("file", "sandbox"):  # both: the file's users, in the sandbox
                raise ShardError(f"users come from a 'file' or a 'sandbox', not {key!r}")

    def shard_of(self, key: str) -> int:
        return shard_of(key, self.shards)

    @property
    def extension(self) -> str | None:
        """The parts' file extension (None: no parts, PostgreSQL)."""
        return _EXTENSIONS.get(self.format)

    def to_json(self) -> dict[str, Any]:
        since = self.filter.since
        return {
            "version": 1, "shards": self.shards, "format": self.format,
            "filter": _filter_json(self.filter),
            "since": None if since is None else str(_filter_json(self.filter)["since"]),
            "users": dict(self.users), "hosts": dict(self.hosts), "output": self.output,
            "hash": "sha256(user key)[:8] big-endian mod shards"}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShardPlan:
        return cls(shards=int(data["shards"]), format=str(data["format"]),
                   filter=_filter_of(data.get("filter") or {}),
                   users=data.get("users") or {}, hosts=data.get("hosts") or {},
                   output=data.get("output"))


# --------------------------------------------------------------------------- the store
class _Store:
    """The output directory: a local folder, or a URL through fsspec. Each write is
    atomic: a local file is written under another name and renamed, an object is one
    put."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.fs: Any = None
        if "://" in root and not root.startswith("file://"):
            if _has_password(root):
                # the folder travels in every task's arguments and in the reports
                raise ShardError(f"the destination {redact(root)} holds a password: give "
                                 "the storage's credentials through its usual variables or "
                                 "configuration instead")
            try:
                import fsspec
            except ImportError:
                raise ShardError(f"cannot write to {root}: a URL destination needs fsspec "
                                 "(pip install 'oxlin-async[dask]', or fsspec and the "
                                 "protocol's package); local folders need nothing"
                                 ) from None
            try:
                self.fs, self.base = fsspec.core.url_to_fs(root)
            except (ImportError, ValueError) as exc:  # no package for that protocol
                raise ShardError(f"cannot write to {root}: {exc}") from None
        else:
            self.base = os.path.abspath(root.removeprefix("file://"))

    def path(self, name: str) -> str:
        return f"{self.base.rstrip('/')}/{name}" if self.fs is not None \
            else os.path.join(self.base, name)

    def makedirs(self) -> None:
        if self.fs is None:
            os.makedirs(self.base, exist_ok=True)
        else:
            self.fs.makedirs(self.base, exist_ok=True)

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self.path(name))) if self.fs is not None \
            else os.path.exists(self.path(name))

    def read(self, name: str) -> bytes | None:
        try:
            if self.fs is not None:
                return bytes(self.fs.cat_file(self.path(name)))
            with open(self.path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        if self.fs is not None:
            self.fs.pipe_file(self.path(name), data)
            return
        path = self.path(name)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def put(self, local: str, name: str) -> None:
        """Move the finished file `local` to `name`, at once."""
        if self.fs is not None:
            self.fs.put_file(local, self.path(name))
        else:
            os.replace(local, self.path(name))

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.fs is not None:
                self.fs.rm_file(self.path(name))
            else:
                os.unlink(self.path(name))

    def names(self) -> list[str]:
        if self.fs is not None:
            return [p.rsplit("/", 1)[-1] for p in self.fs.ls(self.base, detail=False)]
        try:
            return os.listdir(self.base)
        except FileNotFoundError:
            return []

    def scratch(self, index: int) -> str:
        """A local folder of this attempt's own, for a part being written."""
        if self.fs is not None:
            return tempfile.mkdtemp(prefix=f"oxlin-shard-{index}-")
        folder = os.path.join(self.base, TEMPORARY, f"{index:05d}-{uuid.uuid4().hex[:12]}")
        # Another shard that finishes removes `_temporary` when it is empty: between our
        # creating it and our folder in it, so try again (each try is two mkdir calls).
        for _ in range(_SCRATCH_TRIES - 1):
            with contextlib.suppress(FileNotFoundError):
                os.makedirs(folder)
                return folder
        os.makedirs(folder)
        return folder

    def __repr__(self) -> str:
        return f"_Store({self.root!r})"


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=False) + "\n").encode("utf-8")


def prepare(directory: str, plan: ShardPlan) -> ShardPlan:
    """Record `plan` in `directory` (created if need be), or check that the plan already
    there is the same: a different K, format, filter or users source needs a new
    directory (the parts already written follow the old plan)."""
    store = _Store(directory)
    existing = store.read(PLAN)
    if existing is not None:
        there = load_plan(directory)
        if there != plan:
            raise ShardError(f"{directory} holds the parts of another plan ({_describe(there)}"
                             f"; asked: {_describe(plan)}): use a new directory")
        return there
    store.makedirs()
    store.write(PLAN, _json_bytes(plan.to_json()))
    return plan


def _describe(plan: ShardPlan) -> str:
    return (f"{plan.shards} shards, {plan.format}, filter {_filter_json(plan.filter)}, "
            f"users {dict(plan.users)}")


def load_plan(directory: str) -> ShardPlan:
    data = _Store(directory).read(PLAN)
    if data is None:
        raise ShardError(f"{directory} has no {PLAN}: prepare the export first "
                         "(oxlin-async export --shards K ... writes it)")
    try:
        return ShardPlan.from_json(json.loads(data))
    except (ValueError, KeyError, TypeError) as exc:
        raise ShardError(f"{directory}/{PLAN} is not a plan written by oxlin-async "
                         f"({type(exc).__name__})") from None


# ------------------------------------------------------------------------ one shard
@attrs.frozen
class ShardSpec:
    """One shard to run, as a task carries it: where, which, how hard. Nothing here is a
    secret: the worker reads credentials from its own environment and the users from
    the plan's source.

    `concurrency`: "auto" (the default) adapts the shard's requests in flight to what
    the API takes, up to the client's ``max_concurrency`` (64), on its own: shards that
    share one API limit converge to fair shares of it without talking (see
    `oxlin_async._adaptive`); a number pins this shard's requests in flight (`divide`
    gives each running shard its share of a budget)."""

    directory: str
    index: int
    concurrency: Concurrency = attrs.field(
        default="auto", validator=lambda _, __, value: check_concurrency(value))
    per_user_concurrency: int = 4
    max_retries: int | None = None
    retry_failed: bool = False


@attrs.frozen
class ShardResult:
    """What one run of a shard did: `skipped` when its part was already complete (and
    nothing was left to retry)."""

    index: int
    shards: int
    part: str | None
    rows: int
    users: int
    failed: tuple[str, ...]
    skipped: bool = False
    retry: int = 0
    elapsed: float = 0.0
    #: how this run's concurrency went: limits, attempts, 429s (None when skipped)
    concurrency: ConcurrencyStats | None = None


@attrs.frozen
class ShardProgress:
    """A shard's progress, as the bar over shards and users shows it."""

    index: int
    users_total: int
    users_done: int
    users_failed: int
    transactions: int
    finished: bool = False
    #: request attempts so far, those answered 429, and the requests allowed in flight
    #: now (the shard's adaptive limit, or its fixed share)
    requests: int = 0
    throttled: int = 0
    limit: int = 0


class _UserPages:
    """A `Writer` wrapper that holds each user's pages until the user is over: a done
    user's rows are written then, a failed user's dropped."""

    def __init__(self, inner: Writer) -> None:
        self.inner = inner
        self.path = inner.path
        self.rows = 0
        self._pages: dict[str, list[Page]] = {}

    def write(self, page: Page) -> None:
        self._pages.setdefault(page.user, []).append(page)

    def user_done(self, report: UserReport) -> None:
        pages = self._pages.pop(report.user, [])
        if report.status == "done":
            for page in pages:
                self.inner.write(page)
                self.rows += len(page.transactions)
        self.inner.user_done(report)


def _reports(store: _Store, index: int, shards: int,
             names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The complete parts of shard `index`, in retry order: their reports, each of a part
    that is still there."""
    found = []
    for name in store.names() if names is None else names:
        match = _REPORT.fullmatch(name)
        if match and int(match[1]) == index and int(match[2]) == shards:
            data = store.read(name)
            if data is None:
                continue
            with contextlib.suppress(ValueError):
                report = json.loads(data)
                if report.get("part") is None or store.exists(report["part"]):
                    found.append(report)
    return sorted(found, key=lambda r: int(r.get("retry", 0)))


def _report_name(report: Mapping[str, Any]) -> str:
    stem = part_stem(int(report["shard"]), int(report["shards"]), int(report.get("retry", 0)))
    return f"{stem}.report.json"


def _unresolved(reports: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The users whose last attempt failed, with that error."""
    last: dict[str, Mapping[str, Any]] = {}
    for report in reports:
        for user in report["results"]:
            last[user["user"]] = user
    return {k: f"{u.get('error_type')}: {u.get('error')}" for k, u in last.items()
            if u["status"] == "failed"}


def _user_row(u: UserReport) -> dict[str, Any]:
    return {"user": u.user, "status": u.status, "user_id": u.user_id,
            "accounts": u.accounts, "transactions": u.transactions if u.status == "done" else 0,
            "pages": u.pages, "requests": u.requests, "retries": u.retries,
            "error_type": u.error_type, "error": u.error,
            "last_import_date": None if u.last_import_date is None
            else u.last_import_date.isoformat()}


async def export_shard(client: OxlinClient, users: Iterable[BulkUser | tuple[str, str]],
                       directory: str, index: int, *, retry_failed: bool = False,
                       concurrency: Concurrency = "auto", per_user_concurrency: int = 4,
                       on_progress: Callable[[ShardProgress], None] | None = None,
                       on_token: Callable[[BulkUser, Token], None] | None = None
                       ) -> ShardResult:
    """Export shard `index` of the plan in `directory` (see `prepare`) with `client`.

    `users`: every user of the export (or just this shard's): those of other shards are
    left out here. Skips the shard when its part is complete; with `retry_failed`, then
    fetches the users its parts left failed into an additional part. `concurrency`:
    "auto" or a number, as for `OxlinClient.bulk_transactions`; the part's report keeps
    how it went (``concurrency``: limit, peak, mean, attempts, throttled,
    throttle_rate)."""
    check_concurrency(concurrency)
    started = time.monotonic()
    plan = load_plan(directory)
    _check_index(plan, index)
    store = _Store(directory)
    done = _reports(store, index, plan.shards)
    if done and int(done[0].get("retry", 0)) != 0:
        # The shard's main part is gone: it runs again in full, and the retries' parts
        # (whose users it will hold) must go, or they would be counted twice.
        for report in done:
            store.remove(_report_name(report))
            if report.get("part"):
                store.remove(report["part"])
        done = []
    mine = [u for u in map(BulkUser.of, users) if plan.shard_of(u.key) == index]
    retry = 0
    if done:
        failed = _unresolved(done)
        if not retry_failed or not failed:
            last = done[-1]
            return ShardResult(index, plan.shards, last.get("part"),
                               sum(int(r["rows"]) for r in done), len(done[0]["results"]),
                               tuple(sorted(failed)), skipped=True,
                               retry=int(last.get("retry", 0)))
        mine = [u for u in mine if u.key in failed]
        retry = int(done[-1].get("retry", 0)) + 1
        if not mine:  # none of them is in the users source any more: nothing to fetch
            return ShardResult(index, plan.shards, done[-1].get("part"),
                               sum(int(r["rows"]) for r in done), len(done[0]["results"]),
                               tuple(sorted(failed)), skipped=True, retry=retry - 1)
    # The set of parts changes: an earlier commit no longer describes the directory.
    store.remove(SUCCESS)
    stem = part_stem(index, plan.shards, retry)
    part = None if plan.extension is None else f"{stem}.{plan.extension}"
    scratch = store.scratch(index) if part is not None else None
    try:
        writer = _open(plan, None if scratch is None or part is None
                       else os.path.join(scratch, part))
        pages = _UserPages(writer)
        try:
            fetched = await _fetch(client, mine, plan, pages, index, concurrency,
                                   per_user_concurrency, on_progress, on_token)
            result = fetched.users
            writer.record_users(result)
            writer.commit()
            writer.finish()
        finally:
            writer.close()
        if scratch is not None and part is not None:
            store.put(os.path.join(scratch, part), part)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
            if store.fs is None:
                with contextlib.suppress(OSError):  # others' attempts still in there
                    os.rmdir(os.path.dirname(scratch))
    failed_keys = tuple(u.user for u in result if u.status == "failed")
    report = {"shard": index, "shards": plan.shards, "retry": retry, "part": part,
              "rows": pages.rows, "users": len(result), "failed": len(failed_keys),
              "elapsed_seconds": round(time.monotonic() - started, 3),
              "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
              "concurrency": None if fetched.concurrency is None
              else figures(fetched.concurrency),
              "results": [_user_row(u) for u in result]}
    store.write(f"{stem}.report.json", _json_bytes(report))
    return ShardResult(index, plan.shards, part, pages.rows, len(result), failed_keys,
                       retry=retry, elapsed=time.monotonic() - started,
                       concurrency=fetched.concurrency)


def _check_index(plan: ShardPlan, index: object) -> None:
    if not isinstance(index, int) or not 0 <= index < plan.shards:
        raise ShardError(f"shard index {index!r} out of range: the plan has {plan.shards} "
                         f"shards (0 to {plan.shards - 1})")


def _open(plan: ShardPlan, path: str | None) -> Writer:
    from ._export import open_writer

    target = path if path is not None else plan.output
    assert target is not None  # a part's path, or the plan's database
    try:
        return open_writer(plan.format, target, resume_offset=None)
    except ValueError as exc:  # an extra not installed, a database that refuses
        raise ShardError(str(exc)) from None


async def _fetch(client: OxlinClient, users: list[BulkUser], plan: ShardPlan,
                 pages: _UserPages, index: int, concurrency: Concurrency, per_user: int,
                 on_progress: Callable[[ShardProgress], None] | None,
                 on_token: Callable[[BulkUser, Token], None] | None) -> BulkResult:
    last = 0.0

    def progress(p: Any) -> None:
        nonlocal last
        # at most twice a second: the message may cross a network (a Dask queue)
        if on_progress is not None and time.monotonic() - last >= 0.5:
            last = time.monotonic()
            on_progress(ShardProgress(index, len(users), p.users_done, p.users_failed,
                                      p.transactions, False, p.requests, p.throttled,
                                      p.limit))

    run = client.bulk_transactions(users, filter=plan.filter, concurrency=concurrency,
                                   per_user_concurrency=per_user if concurrency == "auto"
                                   else min(per_user, concurrency),
                                   on_progress=progress, progress_interval=0.5,
                                   on_user_done=pages.user_done, on_token=on_token,
                                   models=False)  # the writers read rows only
    async with run:
        async for batch in run:
            pages.write(batch)
    assert run.result is not None  # set once the iteration is over
    if on_progress is not None:
        c = run.result.concurrency
        on_progress(ShardProgress(index, len(users), len(users) - len(run.result.failed),
                                  len(run.result.failed), run.result.transactions, True,
                                  c.attempts if c else 0, c.throttled if c else 0,
                                  c.limit if c else 0))
    return run.result


# ------------------------------------------------------------- a shard, as a worker runs it
def run_shard(spec: ShardSpec | str, index: int | None = None, *,
              on_progress: Callable[[ShardProgress], None] | None = None,
              **options: Any) -> ShardResult:
    """Run one shard in this process from the plan alone, as a worker does (a process of
    ``--workers``, a Dask task, a Kubernetes pod): the client credentials from this
    process's ``OXLIN_CLIENT_ID``/``OXLIN_CLIENT_SECRET``, the users from the plan's
    source. ``run_shard(ShardSpec(...))`` or ``run_shard(directory, index, **options)``
    with the `ShardSpec` fields as options."""
    if not isinstance(spec, ShardSpec):
        spec = ShardSpec(spec, int(index if index is not None else -1), **options)
    return asyncio.run(_run_shard(spec, on_progress))


async def _run_shard(spec: ShardSpec, on_progress: Callable[[ShardProgress], None] | None
                     ) -> ShardResult:
    from ._client import OxlinClient
    from ._retry import RetryPolicy

    plan = load_plan(spec.directory)
    _check_index(plan, spec.index)
    retry = RetryPolicy() if spec.max_retries is None \
        else RetryPolicy(max_retries=spec.max_retries)
    async with contextlib.AsyncExitStack() as stack:
        if "sandbox" in plan.users:
            box = _sandbox(plan.users["sandbox"])
            await stack.enter_async_context(box)
            credentials, environment = (box.client_id, box.client_secret), box.environment
            users: list[BulkUser] = [BulkUser.with_password(u.email, u.password)
                                     for u in box.users]
            tokens = None
            if "file" in plan.users:  # the file's users, against the embedded emulator
                users, tokens = _users_file(plan, spec.index)
        else:
            credentials = _credentials()
            environment = _hosts(plan.hosts)
            users, tokens = _users_file(plan, spec.index)
        # "auto": each shard adapts on its own, up to the client's own bound
        bound: dict[str, Any] = {} if spec.concurrency == "auto" \
            else {"max_concurrency": spec.concurrency}
        client = await stack.enter_async_context(OxlinClient(
            *credentials, environment=environment, retry=retry, **bound))
        return await export_shard(
            client, users, spec.directory, spec.index, retry_failed=spec.retry_failed,
            concurrency=spec.concurrency, per_user_concurrency=spec.per_user_concurrency,
            on_progress=on_progress, on_token=None if tokens is None else tokens.keep)


def _credentials() -> tuple[str, str]:
    client_id, secret = (os.environ.get(name) for name in CREDENTIALS)
    if not client_id or not secret:
        missing = " and ".join(n for n in CREDENTIALS if not os.environ.get(n))
        raise ShardError(f"this worker has no {missing} in its environment: each worker "
                         "reads the client credentials from its own environment")
    return client_id, secret


def _hosts(hosts: Mapping[str, str]) -> Any:
    from .environments import Environment

    urls = [hosts.get(n) or os.environ.get(f"OXLIN_{n.upper()}", "")
            for n in ("auth_url", "api_url", "embed_url")]
    if all(urls):
        return Environment(auth_url=urls[0], api_url=urls[1], embed_url=urls[2])
    env = hosts.get("env") or os.environ.get("OXLIN_ENV")
    if env == "production":
        return Environment.PRODUCTION
    if env == "sandbox":
        return Environment.SANDBOX
    raise ShardError("the plan names no hosts and this worker has neither OXLIN_ENV nor "
                     "OXLIN_AUTH_URL/OXLIN_API_URL/OXLIN_EMBED_URL")


def _users_file(plan: ShardPlan, index: int) -> tuple[list[BulkUser], Any]:
    """The users of the plan's users file, token users with their newest pair. Each shard
    keeps its token users' rotated pairs in a token store of its own, beside the users
    file, so that concurrent shards never overwrite one another's."""
    from .cli import InputError, TokenStore, read_users

    path = plan.users.get("file")
    if not path:
        raise ShardError("the plan has no users source: pass the users to export_shard")
    try:
        users = read_users(str(path))
        tokens = None
        if any(u.access_token is not None for u in users):
            users = TokenStore(f"{path}.tokens.json").apply(users)  # a single run's store
            tokens = TokenStore(f"{path}.tokens-{part_stem(index, plan.shards)}.json")
            users = tokens.apply(users)
    except InputError as exc:
        raise ShardError(str(exc)) from None
    return users, tokens


def _sandbox(options: Mapping[str, Any]) -> Any:
    from .testing import Faults, OxlinSandbox, RateLimit

    opts = dict(options)
    rate = float(opts.pop("fault_rate", 0) or 0)
    seed = int(opts.get("seed", 1))
    faults = Faults.uniform(rate, seed=seed) if rate else Faults(seed=seed)
    faults.latency = float(opts.pop("latency_ms", 0) or 0) / 1000
    faults.retry_after = int(opts.pop("retry_after", 1))
    return OxlinSandbox(users=int(opts.get("users", 20)), seed=seed,
                        accounts_per_user=int(opts.get("accounts", 3)),
                        transactions_per_account=int(opts.get("transactions", 100)),
                        faults=faults, rate_limit=None if not opts.get("rate_limit")
                        else RateLimit.parse(str(opts["rate_limit"])))


# -------------------------------------------------------------------------- commit
def status(directory: str) -> dict[str, Any]:
    """Where the export in `directory` stands: ``missing`` shards (no complete part),
    ``failed`` users (failed in their last attempt: key -> error), and the ``parts``."""
    plan = load_plan(directory)
    store = _Store(directory)
    by_shard: dict[int, list[str]] = {}
    for name in store.names():
        match = _REPORT.fullmatch(name)
        if match and int(match[2]) == plan.shards:
            by_shard.setdefault(int(match[1]), []).append(name)
    parts: list[dict[str, Any]] = []
    missing: list[int] = []
    failed: dict[str, str] = {}
    owners: dict[str, str] = {}
    twice: list[str] = []
    for index in range(plan.shards):
        reports = _reports(store, index, plan.shards, by_shard.get(index, []))
        if not reports or int(reports[0].get("retry", 0)) != 0:  # no main part
            missing.append(index)
            continue
        failed.update(_unresolved(reports))
        for report in reports:
            spent = report.get("concurrency") or {}
            parts.append({"path": report["part"], "shard": index,
                          "retry": int(report.get("retry", 0)), "rows": int(report["rows"]),
                          "users": int(report["users"]), "failed": int(report["failed"]),
                          "attempts": int(spent.get("attempts", 0)),
                          "throttled": int(spent.get("throttled", 0))})
            for user in report["results"]:
                if user["status"] == "done" and user.get("user_id"):
                    owner = owners.setdefault(user["user_id"], user["user"])
                    if owner != user["user"]:
                        twice.append(f"{user['user']} and {owner} (Oxlin user "
                                     f"{user['user_id']})")
    return {"plan": plan, "parts": parts, "missing": missing, "failed": failed,
            "same_user": twice}


def commit(directory: str, *, allow_failed: bool = False) -> dict[str, Any]:
    """Write ``_manifest.json`` (every part and its row count) and then ``_SUCCESS``, once
    every shard has a complete part and no user is left failed (`allow_failed`: list
    them in the manifest and commit anyway). Raises `ShardError` saying what is missing.
    Returns the manifest."""
    state = status(directory)
    plan: ShardPlan = state["plan"]
    store = _Store(directory)
    problems = []
    if state["missing"]:
        shown = ", ".join(map(str, state["missing"][:10]))
        problems.append(f"{len(state['missing'])} of {plan.shards} shards have no complete "
                        f"part (shard {shown}{', ...' if len(state['missing']) > 10 else ''})")
    if state["failed"] and not allow_failed:
        shown = ", ".join(sorted(state["failed"])[:5])
        problems.append(f"{len(state['failed'])} users failed ({shown}"
                        f"{', ...' if len(state['failed']) > 5 else ''}): run the shards "
                        "again with --retry-failed, or commit with --allow-failed")
    if state["same_user"]:
        problems.append("one Oxlin user exported under two keys, in two shards: "
                        + "; ".join(state["same_user"][:3]))
    if problems:
        store.remove(SUCCESS)
        raise ShardError(f"cannot commit {directory}: " + "; ".join(problems))
    manifest = {
        "version": 1, "plan": plan.to_json(), "format": plan.format,
        "rows": sum(p["rows"] for p in state["parts"]),
        "users": sum(p["users"] for p in state["parts"] if p["retry"] == 0),
        "failed": sorted(state["failed"]),
        # every part's requests and 429s, summed (the rate is of the sums)
        "concurrency": throttling(sum(p["attempts"] for p in state["parts"]),
                                  sum(p["throttled"] for p in state["parts"])),
        "parts": state["parts"],
        "committed_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    store.write(MANIFEST, _json_bytes(manifest))
    store.write(SUCCESS, b"")  # last: readers that see it find the manifest complete
    if store.fs is None:
        shutil.rmtree(store.path(TEMPORARY), ignore_errors=True)  # attempts that died
    return manifest


def part_paths(directory: str) -> list[str]:
    """The files of a committed export, from its manifest (raises `ShardError` when it is
    not committed)."""
    store = _Store(directory)
    if not store.exists(SUCCESS):
        raise ShardError(f"{directory} is not committed (no {SUCCESS})")
    data = store.read(MANIFEST)
    assert data is not None
    return [store.path(p["path"]) for p in json.loads(data)["parts"] if p["path"]]


# ------------------------------------------------------------- many shards, many processes
@attrs.frozen
class ShardedRun:
    """Every shard's result, and the manifest when the run committed."""

    results: tuple[ShardResult, ...]
    manifest: Mapping[str, Any] | None = attrs.field(default=None, repr=False)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(k for r in self.results for k in r.failed)

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.results)

    @property
    def attempts(self) -> int:
        """Request attempts of the shards this run ran (skipped ones: none)."""
        return sum(r.concurrency.attempts for r in self.results if r.concurrency)

    @property
    def throttled(self) -> int:
        """Attempts of the shards this run ran that were answered 429."""
        return sum(r.concurrency.throttled for r in self.results if r.concurrency)

    @property
    def throttle_rate(self) -> float:
        """The share of all attempts answered 429 (the sums' ratio, 0 to 1)."""
        return self.throttled / self.attempts if self.attempts else 0.0


def absolute(directory: str) -> str:
    """`directory` as every process sees it: a local folder's absolute path (a worker's
    current folder is not the caller's), a URL as it is."""
    return directory if "://" in directory else os.path.abspath(directory)


def divide(concurrency: Concurrency, running: int) -> Concurrency:
    """Each of `running` concurrent shards' share of a `concurrency` budget (at least 1),
    so that the API sees at most `concurrency` requests in flight. "auto" stays "auto":
    each shard adapts on its own, and shards sharing one API limit converge to fair
    shares of it without talking (`oxlin_async._adaptive`)."""
    if check_concurrency(concurrency) == "auto":
        return "auto"
    assert isinstance(concurrency, int)
    return max(1, concurrency // max(1, running))


_queue: Any = None  # a worker process's progress queue (see `run_local`)


def _init_worker(queue: Any) -> None:
    global _queue
    _queue = queue


def _local_task(spec: ShardSpec) -> ShardResult:
    queue = _queue
    return run_shard(spec, on_progress=None if queue is None
                     else lambda p: queue.put(attrs.astuple(p)))


def run_local(directory: str, *, workers: int, concurrency: Concurrency = "auto",
              per_user_concurrency: int = 4, max_retries: int | None = None,
              retry_failed: bool = False, commit_after: bool = True,
              allow_failed: bool = False,
              on_progress: Callable[[ShardProgress], None] | None = None,
              on_shard: Callable[[ShardResult], None] | None = None) -> ShardedRun:
    """Every shard of the plan in `directory`, in `workers` local processes (each with
    this process's environment, so its credentials), each shard with its share of a
    numeric `concurrency` ("auto": each adapts on its own, see `divide`); then `commit`
    (unless `commit_after` is false, or some user failed and not `allow_failed`: the
    run's `manifest` is None then)."""
    import concurrent.futures
    import multiprocessing

    check_concurrency(concurrency)
    directory = absolute(directory)
    plan = load_plan(directory)
    if not isinstance(workers, int) or workers < 1:
        raise ShardError(f"workers must be an int >= 1, got {workers!r}")
    share = divide(concurrency, min(workers, plan.shards))
    specs = [ShardSpec(directory, i, share, per_user_concurrency, max_retries, retry_failed)
             for i in range(plan.shards)]
    # Spawned, not forked: each worker starts with this process's environment as it is
    # now (its credentials), and without the progress bar's thread. (A fork server
    # would start faster, but keeps the environment of its own first use.)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue() if on_progress is not None else None
    results: list[ShardResult] = []
    with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(queue,)) as pool:
        pending = {pool.submit(_local_task, spec) for spec in specs}
        errors: list[str] = []
        while pending:
            finished, pending = concurrent.futures.wait(
                pending, timeout=0.2, return_when=concurrent.futures.FIRST_COMPLETED)
            _drain(queue, on_progress)
            for future in finished:
                error = future.exception()
                if error is not None:
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                results.append(future.result())
                if on_shard is not None:
                    on_shard(results[-1])
        _drain(queue, on_progress)
    if queue is not None:
        queue.close()
        queue.join_thread()
    if errors:
        raise ShardError(f"{len(errors)} shards failed: {errors[0]}")
    return _finish(directory, results, commit_after, allow_failed)


def _drain(queue: Any, on_progress: Callable[[ShardProgress], None] | None) -> None:
    import queue as queues

    if queue is None or on_progress is None:
        return
    while True:
        try:
            on_progress(ShardProgress(*queue.get_nowait()))
        except queues.Empty:
            return


def _finish(directory: str, results: list[ShardResult], commit_after: bool,
            allow_failed: bool) -> ShardedRun:
    ordered = tuple(sorted(results, key=lambda r: r.index))
    if not commit_after or (any(r.failed for r in ordered) and not allow_failed):
        return ShardedRun(ordered)
    return ShardedRun(ordered, commit(directory, allow_failed=allow_failed))


__all__ = ["CREDENTIALS", "FORMATS", "MANIFEST", "PLAN", "SUCCESS", "ShardError", "ShardPlan",
           "ShardProgress", "ShardResult", "ShardSpec", "ShardedRun", "commit", "divide",
           "export_shard", "load_plan", "part_paths", "part_stem", "prepare", "run_local",
           "run_shard", "shard_of", "status"]
