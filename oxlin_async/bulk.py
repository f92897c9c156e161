"""Bulk fetching: every transaction of many users, concurrently, with nothing lost.

    async with client.bulk_transactions(users, start_date=datetime.date(2025, 1, 1)) as run:
        async for batch in run:             # one page of one account, as it arrives
            save(batch.user, batch.account, batch.transactions)
    print(run.result.failed)

Leaving the ``async with`` block (a ``break``, an exception) cancels every request of
the run at once; without it, call ``await run.aclose()`` yourself.

How it works: `concurrency` user workers share a semaphore of `concurrency` requests in
flight, each user a semaphore of `per_user_concurrency`; a worker signs the user in,
lists the accounts and walks every account's transactions at once. Pages go through a
bounded queue, so a slow consumer slows the fetching and memory stays bounded however
many users there are. Each user's requests go through
``user_client.with_options(limits=..., stats=...)``: they hold that user's and the job's
semaphores and count into the user's `RequestStats`. A user that fails is reported with
the reason, and the others go on. With a `Checkpoint`, an account is recorded as done
once the consumer has taken all its pages (that is, asked for the next item), so a
re-run skips it: the two runs together deliver every transaction exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO

import attrs

from ._filters import TransactionFilter
from ._options import RequestStats
from .errors import ArgumentError, OxlinError, PermissionDeniedError
from .models import Account, Transaction

if TYPE_CHECKING:
    import datetime as dt

    from ._auth import Token
    from ._client import OxlinClient, UserClient


def token_key(access_token: str, refresh_token: str | None = None) -> str:
    """The stable key of a user known only by a token pair: a digest of the refresh token
    (of the access token without one), never the secret itself nor a position in a file.
    The pair a run started from names the user for good, so a checkpoint still finds
    the user after its refresh token has rotated (the newest pair is kept apart)."""
    secret = refresh_token or access_token
    return "token:" + hashlib.sha256(secret.encode()).hexdigest()[:24]


@attrs.frozen
class BulkUser:
    """One user to fetch: by e-mail and password (`with_password`), or by user token
    (`with_token`). `key` names the user in results, checkpoints and exports: the e-mail,
    or for a token user `token_key` of its token pair. Two users with the same key are
    the same user; a bulk run also finds two keys of one Oxlin user (by the id
    ``/users/me`` gives) and fetches that user once, failing the other key."""

    key: str
    email: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    access_token: str | None = attrs.field(default=None, repr=False)
    refresh_token: str | None = attrs.field(default=None, repr=False)

    @classmethod
    def with_password(cls, email: str, password: str) -> BulkUser:
        return cls(key=email, email=email, password=password)

    @classmethod
    def with_token(cls, access_token: str, refresh_token: str | None = None, *,
                   key: str | None = None) -> BulkUser:
        return cls(key=key if key is not None else token_key(access_token, refresh_token),
                   access_token=access_token, refresh_token=refresh_token)

    @classmethod
    def of(cls, user: object) -> BulkUser:
        """`user` as a BulkUser: one already, or an ``(email, password)`` pair of str."""
        if isinstance(user, BulkUser):
            return user
        if (isinstance(user, tuple) and len(user) == 2
                and all(isinstance(x, str) for x in user)):
            return cls.with_password(user[0], user[1])
        raise ArgumentError("users", "each user must be a BulkUser or an (email, password) "
                                     f"tuple of str, got a {type(user).__name__}")

    def user_client(self, client: OxlinClient, *,
                    on_token: Callable[[Token], None] | None = None) -> UserClient:
        """This user's view of `client` (no I/O); `on_token` sees each renewed token
        of a token user (see `OxlinClient.as_user_token`)."""
        if self.email is not None and self.password is not None:
            return client.as_user(self.email, self.password)
        if self.access_token is not None:
            return client.as_user_token(self.access_token, self.refresh_token,
                                        on_token=on_token)
        raise ArgumentError("users", f"user {self.key!r} has neither a password nor a token")


@attrs.frozen
class Batch:
    """One page of one account's transactions, and whose they are (a `_rows.Page`)."""

    user: str
    account: Account
    transactions: list[Transaction]
    #: the user's Oxlin id (None when the token may not read ``/users/me``)
    user_id: str | None = None
    #: category id -> name, read once per run (``GET /categories``)
    categories: Mapping[str, str] = attrs.field(factory=dict, repr=False)


#: pending, done, failed, or skipped (already done in the checkpoint)
UserStatus = Literal["pending", "done", "failed", "skipped"]


@attrs.define
class UserReport:
    """How one user went; see `UserStatus`."""

    user: str
    status: UserStatus = "pending"
    user_id: str | None = None
    accounts: int = 0
    accounts_skipped: int = 0
    transactions: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    error: str | None = None
    error_type: str | None = None
    #: the newest import_date seen: the next incremental run's `since`
    last_import_date: dt.datetime | None = None


@attrs.define
class BulkResult:
    users: list[UserReport]
    elapsed: float = 0.0

    @property
    def failed(self) -> list[UserReport]:
        return [u for u in self.users if u.status == "failed"]

    @property
    def transactions(self) -> int:
        return sum(u.transactions for u in self.users)

    @property
    def ok(self) -> bool:
        return not self.failed


@attrs.frozen
class Progress:
    users_total: int | None
    users_done: int
    users_failed: int
    transactions: int
    requests: int
    retries: int
    elapsed: float


class Checkpoint:
    """An append-only JSON-lines log of finished accounts and users.

    Each line is flushed as it is written, so a run killed at any point leaves at most
    a torn last line, which loading ignores. `extra` carries the caller's state at each
    account (an output file's offset, say); `last_extra` is the newest.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.users: set[str] = set()
        self.accounts: set[tuple[str, str]] = set()
        #: transactions delivered of each finished (user, account) (0 if not recorded)
        self.counts: dict[tuple[str, str], int] = {}
        #: the Oxlin user id of each finished user, where it was known
        self.user_ids: dict[str, str] = {}
        self.last_extra: dict[str, Any] = {}
        self._file: TextIO | None = None
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    with contextlib.suppress(ValueError):
                        self._replay(json.loads(line))
        except FileNotFoundError:
            pass

    def _replay(self, entry: dict[str, Any]) -> None:
        if "account" in entry:
            self.accounts.add((entry["user"], entry["account"]))
            self.counts[(entry["user"], entry["account"])] = int(entry.get("transactions", 0))
            self.last_extra = entry.get("extra") or {}
        elif entry.get("done"):
            self.users.add(entry["user"])
            if entry.get("user_id"):
                self.user_ids[entry["user"]] = str(entry["user_id"])

    def _write(self, entry: dict[str, Any]) -> None:
        if self._file is None:
            torn = False
            with contextlib.suppress(OSError), open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell():
                    f.seek(-1, os.SEEK_END)
                    torn = f.read(1) != b"\n"
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            if torn:
                # A run killed mid-write left a torn last line: end it, or the next entry
                # would be glued to it and lost on loading.
                self._file.write("\n")
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        self._replay(entry)

    def account_done(self, user: str, account_id: str, extra: Mapping[str, Any] | None = None,
                     *, transactions: int | None = None) -> None:
        entry: dict[str, Any] = {"user": user, "account": account_id, "extra": dict(extra or {})}
        if transactions is not None:
            entry["transactions"] = transactions
        self._write(entry)

    def user_done(self, user: str, *, user_id: str | None = None) -> None:
        entry: dict[str, Any] = {"user": user, "done": True}
        if user_id is not None:
            entry["user_id"] = user_id
        self._write(entry)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@attrs.frozen
class _AccountDone:
    report: UserReport
    account_id: str
    transactions: int


@attrs.frozen
class _UserDone:
    report: UserReport


#: What the producers put in the queue; None ends the run.
_Item = Batch | _AccountDone | _UserDone | None


async def _all_or_nothing(jobs: list[Coroutine[Any, Any, None]]) -> None:
    """Run the jobs concurrently; the first failure cancels the others and is raised."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class BulkRun:
    """An async iterator of `Batch`; `result` once it is exhausted. See the module doc.

    `users`: `BulkUser` values (``BulkUser.with_password(email, password)``,
    ``BulkUser.with_token(access_token, refresh_token)``) or plain ``(email, password)``
    tuples, in a list or any (async) iterable; a list is checked here, before any
    request (anything else raises `ArgumentError`). `on_token(user, token)` is called
    with each token a token user's session obtains: refresh tokens are single-use, so
    keep ``token.access_token``/``token.refresh_token`` for the next run.

    Which transactions: a `TransactionFilter` as `filter`, or its fields as keywords
    (``since=``, ``start_date=``, ``statuses=``...); the fetcher chooses `account_id`
    and the order itself.
    """

    def __init__(self, client: OxlinClient,
                 users: Iterable[BulkUser | tuple[str, str]]
                 | AsyncIterable[BulkUser | tuple[str, str]],
                 *, concurrency: int = 32, per_user_concurrency: int = 4, buffer: int = 64,
                 filter: TransactionFilter | None = None,
                 checkpoint: Checkpoint | str | os.PathLike[str] | None = None,
                 checkpoint_extra: Callable[[], Mapping[str, Any]] | None = None,
                 on_progress: Callable[[Progress], None] | None = None,
                 progress_interval: float = 0.2,
                 on_user_done: Callable[[UserReport], None] | None = None,
                 on_token: Callable[[BulkUser, Token], None] | None = None,
                 **filters: Any) -> None:
        for name, value in (("concurrency", concurrency),
                            ("per_user_concurrency", per_user_concurrency), ("buffer", buffer)):
            if not isinstance(value, int) or value < 1:
                raise ArgumentError(name, f"must be an int >= 1, got {value!r}")
        if "sort" in filters:
            raise ArgumentError("sort", "is chosen by the bulk fetcher")
        #: what is fetched of each account: `filter` and the `TransactionFilter` keywords
        #: (``since=...``, ``statuses=...``), checked here, before any request
        self.filter = TransactionFilter.of(filter, **filters)
        if self.filter.account_id is not None:
            raise ArgumentError("account_id", "is chosen by the bulk fetcher")
        self._client = client
        if isinstance(users, (list, tuple)):
            users = [BulkUser.of(u) for u in users]  # a wrong kind of user fails here, early
        elif not isinstance(users, (Iterable, AsyncIterable)) or isinstance(users, (str, bytes)):
            raise ArgumentError("users", "must be an iterable (or async iterable) of BulkUser "
                                         f"or (email, password) tuples, got {users!r:.40}")
        self._users = users
        self._on_token = on_token
        #: user key by Oxlin user id: two keys of one user (an e-mail and a token, two
        #: token pairs) are the same user, fetched once
        self._owners: dict[str, str] = {}
        self.concurrency = concurrency
        self.per_user_concurrency = per_user_concurrency
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=buffer)
        self.checkpoint = (checkpoint if isinstance(checkpoint, Checkpoint) or checkpoint is None
                           else Checkpoint(checkpoint))
        self._checkpoint_extra = checkpoint_extra
        self._on_progress = on_progress
        #: called in the consumer's task once a user is over, all its batches taken
        self._on_user_done = on_user_done
        self._interval = progress_interval
        self._reports: list[UserReport] = []
        # The categories' names, read once per run with the first user's token.
        self._categories: dict[str, str] | None = None
        self._categories_lock = asyncio.Lock()
        # Running totals, so that progress costs the same at user 10 and at user 10**6:
        # users in flight keep their own stats until they are folded in here.
        self._active: dict[int, tuple[UserReport, RequestStats]] = {}
        self._finished = RequestStats()
        self._users_done = self._users_failed = self._transactions = 0
        self._users_total = len(users) if isinstance(users, (list, tuple)) else None
        self._started = 0.0
        self._last_progress = 0.0
        self._supervisor: asyncio.Task[None] | None = None
        # Weak: the generator holds the run, and a strong reference back would make a
        # cycle that keeps an abandoned run's requests going until the cyclic collector.
        self._iterator: weakref.ref[AsyncGenerator[Batch, None]] | None = None
        self.result: BulkResult | None = None

    # ------------------------------------------------------------------ consumer side
    def __aiter__(self) -> AsyncIterator[Batch]:
        iterator = self._iterate()
        self._iterator = weakref.ref(iterator)
        return iterator

    async def __aenter__(self) -> BulkRun:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def _iterate(self) -> AsyncGenerator[Batch, None]:
        self._started = time.monotonic()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    break
                if isinstance(item, Batch):
                    yield item  # the consumer handles it before asking for more
                elif isinstance(item, _AccountDone):
                    if self.checkpoint is not None:
                        extra = self._checkpoint_extra() if self._checkpoint_extra else None
                        self.checkpoint.account_done(item.report.user, item.account_id, extra,
                                                     transactions=item.transactions)
                elif isinstance(item, _UserDone):
                    report = item.report
                    if self._on_user_done is not None:
                        self._on_user_done(report)
                    if report.status == "done" and self.checkpoint is not None:
                        self.checkpoint.user_done(report.user, user_id=report.user_id)
                    self._fold(report)
                    self._progress(force=True)
            await self._supervisor  # re-raises what went wrong outside any one user
        finally:
            await self._stop()
        self.result = BulkResult(self._reports, time.monotonic() - self._started)
        self._progress(force=True)

    async def aclose(self) -> None:
        """Stop the run now: cancel every request in flight and end the iteration."""
        ref, self._iterator = self._iterator, None
        await self._stop()
        iterator = ref() if ref is not None else None
        if iterator is not None:
            await iterator.aclose()

    async def _stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and not supervisor.done():
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)

    def _fold(self, report: UserReport) -> None:
        """A finished user: its counts move into the running totals."""
        _, stats = self._active.pop(id(report), (report, None))
        if stats is not None:
            report.requests, report.retries = stats.requests, stats.retries
            self._finished.requests += stats.requests
            self._finished.retries += stats.retries
        if report.status == "failed":
            self._users_failed += 1
        else:
            self._users_done += 1

    def progress(self) -> Progress:
        requests, retries = self._finished.requests, self._finished.retries
        for _, stats in self._active.values():
            requests += stats.requests
            retries += stats.retries
        return Progress(
            users_total=self._users_total, users_done=self._users_done,
            users_failed=self._users_failed, transactions=self._transactions,
            requests=requests, retries=retries, elapsed=time.monotonic() - self._started)

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._on_progress is not None and (force or now - self._last_progress
                                              >= self._interval):
            self._last_progress = now
            self._on_progress(self.progress())

    # ------------------------------------------------------------------ producer side
    async def _user_source(self) -> AsyncGenerator[BulkUser, None]:
        if isinstance(self._users, AsyncIterable):
            async for user in self._users:
                yield BulkUser.of(user)
        else:
            for user in self._users:
                yield BulkUser.of(user)

    async def _supervise(self) -> None:
        everyone = asyncio.Semaphore(self.concurrency)
        source = self._user_source()
        lock = asyncio.Lock()

        async def worker() -> None:
            while True:
                async with lock:  # the source is shared by the workers
                    user = await anext(source, None)
                if user is None:
                    return
                await self._fetch_user(user, everyone)

        try:
            try:
                await _all_or_nothing([worker() for _ in range(self.concurrency)])
            finally:
                await source.aclose()
        except Exception:
            # Not one user's failure (the users source or a callback raised, say): end the
            # consumer's loop so that `await self._supervisor` raises it there, rather
            # than leave the consumer waiting for an end that never comes.
            await self._queue.put(None)
            raise
        await self._queue.put(None)

    async def _fetch_user(self, user: BulkUser, everyone: asyncio.Semaphore) -> None:
        report = UserReport(user.key)
        self._reports.append(report)
        if self.checkpoint is not None and user.key in self.checkpoint.users:
            report.status = "skipped"
            await self._queue.put(_UserDone(report))
            return
        stats = RequestStats()
        self._active[id(report)] = (report, stats)
        try:
            # A malformed e-mail or password is this user's failure, not the run's.
            # Every request of this view, token requests included, counts into `stats`
            # and holds a slot of this user's and of the job's limits.
            on_token = self._on_token
            user_client = user.user_client(
                self._client, on_token=None if on_token is None
                else lambda token: on_token(user, token)).with_options(
                limits=(asyncio.Semaphore(self.per_user_concurrency), everyone), stats=stats)
        except OxlinError as error:
            report.status, report.error = "failed", str(error)
            report.error_type = type(error).__name__
            await self._queue.put(_UserDone(report))
            return
        accounts: list[Account] = []

        async def list_accounts() -> None:
            accounts.extend(await user_client.accounts.list().collect())

        async def learn_id() -> None:
            # The report names the user by id too; a token without the `profile` scope
            # cannot read it, which is no reason to fail the user.
            if user_client.user_id is None:
                with contextlib.suppress(PermissionDeniedError):
                    await user_client.users.me()

        async def read_categories() -> None:
            async with self._categories_lock:  # one request per run, not per user
                if self._categories is None:
                    # a category without a name (a tolerant field) leaves the cell empty
                    self._categories = {c.id: c.label
                                        for c in await user_client.categories.list()
                                        if c.label is not None}

        try:
            await _all_or_nothing([list_accounts(), learn_id(), read_categories()])
            report.user_id = user_client.user_id
            self._claim(user.key, report.user_id)
            todo = [a for a in accounts if self.checkpoint is None
                    or (user.key, a.id) not in self.checkpoint.accounts]
            report.accounts = len(accounts)
            report.accounts_skipped = len(accounts) - len(todo)
            await _all_or_nothing([self._fetch_account(user_client, report, a) for a in todo])
            report.status = "done"
        except OxlinError as error:
            report.status = "failed"
            report.error = str(error)
            report.error_type = type(error).__name__
        finally:
            user_client.forget()  # memory stays bounded however many users pass through
            # A token request still in flight (shielded for its other waiters) has none
            # left once the walk is cancelled or failed: do not leave it running.
            await user_client.tokens.aclose()
        await self._queue.put(_UserDone(report))

    def _claim(self, key: str, user_id: str | None) -> None:
        """`key` is Oxlin user `user_id`: refused if another key of this export is."""
        if user_id is None:
            return
        if not self._owners and self.checkpoint is not None:
            self._owners = {uid: k for k, uid in self.checkpoint.user_ids.items()}
        owner = self._owners.setdefault(user_id, key)
        if owner != key:
            raise ArgumentError("users", f"{key} is the same Oxlin user (id {user_id}) as "
                                         f"{owner}: exported once, as {owner}")

    async def _fetch_account(self, user_client: UserClient, report: UserReport,
                             account: Account) -> None:
        walk = user_client.transactions.list(filter=self.filter, account_id=account.id,
                                             prefetch=self.per_user_concurrency)
        delivered = 0
        async for page in walk.pages():
            delivered += len(page)
            report.pages += 1
            report.transactions += len(page)
            self._transactions += len(page)
            newest = max(t.import_date for t in page)
            if report.last_import_date is None or newest > report.last_import_date:
                report.last_import_date = newest
            await self._queue.put(Batch(report.user, account, page, report.user_id,
                                        self._categories or {}))
            self._progress()
        await self._queue.put(_AccountDone(report, account.id, delivered))
