"""A dlt source of the Oxlin API (the ``dlt`` extra): users, accounts and transactions,
loaded into any warehouse dlt knows, merged on their primary keys.

    import dlt
    from oxlin_async.dlt import oxlin_source

    pipeline = dlt.pipeline("oxlin", destination="duckdb", dataset_name="oxlin")
    pipeline.run(oxlin_source(users, client_id=..., client_secret=...))

Resources (each ``write_disposition="merge"``, so a re-run never duplicates a row):

- ``users``: one row per user (primary key ``key``: `BulkUser.key`, the identity the
  export keys users by), with its Oxlin id and e-mail when the token may read them;
- ``accounts``: the users' accounts (primary key ``id``), balances as exact decimals;
- ``transactions``: the export row (`_rows.ROW`, primary key ``id``), one Arrow table per
  page with the Parquet writer's schema (`_rows.arrow_schema`: decimal128 amounts), so
  dlt writes the pages as they are rather than normalizing a dict per row.

Transactions are incremental on ``import_date``, with a cursor per user kept in the
resource's dlt state (``import_date``: user key -> the newest import date loaded): the
next run asks the API only for ``start_import_date`` >= that cursor (the server filters;
docs/oxlin-api §6.4, §9), inclusive, and the merge absorbs the rows at the boundary. A
cursor per user rather than one for the whole resource, because one cursor would skip
the history of a user added to the list later, and the imports a bank made for one user
while the run was reading another. A user's cursor moves only once all its pages are
taken; a user that fails keeps its cursor (and is logged), so the next run retries it.

Credentials live in this process only: the client secret and the users' passwords or
tokens are held by the source's closures and the clients it makes, never passed through
dlt's configuration, never in its state, trace, load packages or logs (dlt sees user
keys: e-mails, or for token users a digest of their token pair).

Sharded loads: ``shard=(index, count)`` keeps the users of one shard, by the same stable
hash of `BulkUser.key` as the sharded export, and `shard_pipeline` gives each shard a
pipeline (and state) of its own; the shards' loads merge into one dataset.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import dlt

# Here, not in the loop that makes the tables: dlt looks pyarrow up in `sys.modules`
# from its own thread, and would find it half imported.
import pyarrow as pa

from ._filters import TransactionFilter
from ._rows import Kind, Page, arrow_schema, encoder
from .bulk import BulkUser, UserReport
from .environments import Environment
from .errors import ArgumentError, OxlinError, PermissionDeniedError
from .shards import shard_of

if TYPE_CHECKING:
    from dlt.common.schema.typing import TColumnSchema
    from dlt.extract import DltResource, DltSource

    from ._auth import Token
    from ._client import OxlinClient, UserClient

__all__ = ["oxlin_source", "shard_of", "shard_pipeline"]

log = logging.getLogger("oxlin_async")

T = TypeVar("T")

#: the resource state's key of the per-user import-date cursors
CURSORS = "import_date"

# Arrow takes Decimal, date and aware datetime as they are; enums as their text.
_arrow_rows = encoder({Kind.ENUM: str})
_SCHEMA = arrow_schema()

#: decimals of account balances: exact, as the amounts are
_MONEY: TColumnSchema = {"data_type": "decimal", "precision": 18, "scale": 2}


def _check_shard(shard: object) -> tuple[int, int]:
    if (isinstance(shard, tuple) and len(shard) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in shard)
            and shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        return shard[0], shard[1]
    raise ArgumentError("shard", f"must be (index, count) with 0 <= index < count, got {shard!r}")


def shard_pipeline(shard: tuple[int, int], *, pipeline_name: str = "oxlin",
                   **options: Any) -> dlt.Pipeline:
    """A dlt pipeline of its own for one shard (its own name, so its own state and
    cursors): ``oxlin-00003-of-00016``; `options` go to `dlt.pipeline` (``destination``,
    ``dataset_name``, ``pipelines_dir``...)."""
    index, count = _check_shard(shard)
    pipeline: dlt.Pipeline = dlt.pipeline(
        pipeline_name=f"{pipeline_name}-{index:05d}-of-{count:05d}", **options)
    return pipeline


def _page_table(page: Page) -> Any:
    """One page as an Arrow table of the export row's schema."""
    rows = _arrow_rows(page)
    columns = zip(*rows, strict=True) if rows else ([] for _ in _SCHEMA)
    return pa.Table.from_arrays([pa.array(list(values), type=field.type)
                                 for values, field in zip(columns, _SCHEMA, strict=True)],
                                schema=_SCHEMA)


def _failed(resource: str, user: str, kind: str | None, error: object) -> None:
    # the key and the error's type and message: none of them holds a secret
    log.warning("oxlin dlt %s: user %s failed (%s): %s", resource, user, kind, error)


async def _per_user(users: Sequence[BulkUser], concurrency: int,
                    work: Callable[[BulkUser], Awaitable[T | None]]) -> AsyncIterator[list[T]]:
    """`work` of each user, `concurrency` users at a time, in the users' order: a list
    per `concurrency` users (dlt takes each item of an async generator through a future
    it polls, so one item per user would cost more than the user's requests)."""
    for start in range(0, len(users), concurrency):
        done = await asyncio.gather(*(work(u) for u in users[start:start + concurrency]))
        results = [result for result in done if result is not None]
        if results:
            yield results


class _Session:
    """What the source's resources share while they run (all on dlt's one event loop):
    one client, open while any resource runs, and each user's newest credentials.

    A token user's refresh token is single-use: the resources must not each spend the
    pair they were given. They share the client's token manager of the user while they
    overlap, and a resource that starts later takes the newest pair (`on_token`)."""

    def __init__(self, new_client: Callable[[], OxlinClient], users: Sequence[BulkUser],
                 on_token: Callable[[BulkUser, Token], None] | None) -> None:
        self._new_client = new_client
        self._client: OxlinClient | None = None
        self._holders = 0
        self._newest = {user.key: user for user in users}
        self._on_token = on_token

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[OxlinClient]:
        if self._client is None:
            self._client = self._new_client()
        client = self._client
        self._holders += 1
        try:
            yield client
        finally:
            self._holders -= 1
            if self._holders == 0 and self._client is client:
                self._client = None
                await client.close()

    def user(self, user: BulkUser) -> BulkUser:
        """`user` with its newest credentials."""
        return self._newest.get(user.key, user)

    def users(self, users: Iterable[BulkUser]) -> Iterator[BulkUser]:
        # lazily: a user is taken when its turn comes, with the pair newest by then
        return (self.user(u) for u in users)

    def token(self, user: BulkUser, token: Token) -> None:
        if user.access_token is not None:  # a token user: this pair replaces the old one
            self._newest[user.key] = BulkUser.with_token(
                token.access_token, token.refresh_token, key=user.key)
        if self._on_token is not None:
            self._on_token(user, token)

    async def signed_in(self, client: OxlinClient, given: BulkUser, resource: str,
                        read: Callable[[UserClient], Awaitable[T]]) -> T | None:
        """`read` with the user's view of `client`; None (logged) when the user fails."""
        user = self.user(given)
        try:
            user_client = user.user_client(client, on_token=lambda t: self.token(user, t))
        except OxlinError as error:
            _failed(resource, user.key, type(error).__name__, error)
            return None
        try:
            return await read(user_client)
        except OxlinError as error:
            _failed(resource, user.key, type(error).__name__, error)
            return None
        finally:
            user_client.forget()  # the next resource starts from the newest pair


def oxlin_source(users: Iterable[BulkUser | tuple[str, str]], *,
                 client_id: str | None = None, client_secret: str | None = None,
                 environment: Environment | None = None,
                 shard: tuple[int, int] | None = None,
                 since: dt.datetime | dt.date | int | None = None,
                 concurrency: int = 32, per_user_concurrency: int = 4,
                 on_token: Callable[[BulkUser, Token], None] | None = None,
                 name: str = "oxlin", **client_options: Any) -> DltSource:
    """The dlt source of `users`' data (see the module doc).

    `users`: `BulkUser` values or ``(email, password)`` tuples. `client_id` and
    `client_secret` default to ``$OXLIN_CLIENT_ID``/``$OXLIN_CLIENT_SECRET`` (a worker
    reads its own environment); `environment` to the Oxlin sandbox; `client_options` go
    to `OxlinClient` (``retry=``, ``timeout=``...). `since` bounds the import date of a
    user's first load (later loads start at the user's cursor). `shard=(index, count)`
    keeps only that shard's users (`shard_of`). `on_token(user, token)` sees each token a
    token user's session obtains: refresh tokens are single-use, so keep
    ``token.access_token``/``token.refresh_token`` for the next load. Raises
    `ArgumentError` for a bad value, before any request. Callbacks run in dlt's extract
    thread.
    """
    client_id = client_id or os.environ.get("OXLIN_CLIENT_ID")
    client_secret = client_secret or os.environ.get("OXLIN_CLIENT_SECRET")
    if not client_id or not client_secret:
        raise ArgumentError("client_id" if not client_id else "client_secret",
                            "is required (or set OXLIN_CLIENT_ID and OXLIN_CLIENT_SECRET)")
    for label, value in (("concurrency", concurrency),
                         ("per_user_concurrency", per_user_concurrency)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ArgumentError(label, f"must be an int >= 1, got {value!r}")
    if isinstance(users, (str, bytes)) or not isinstance(users, Iterable):
        raise ArgumentError("users", "must be an iterable of BulkUser or (email, password) "
                                     f"tuples, got {users!r:.40}")
    chosen = [BulkUser.of(u) for u in users]
    if shard is not None:
        index, count = _check_shard(shard)
        chosen = [u for u in chosen if shard_of(u.key, count) == index]
    first = TransactionFilter.of(since=since)
    where = environment if environment is not None else Environment.SANDBOX
    secret_id, secret = client_id, client_secret  # held here, never given to dlt

    from ._client import OxlinClient

    try:  # an unknown option fails here, not in dlt's extract thread
        inspect.signature(OxlinClient).bind(secret_id, secret, environment=where,
                                            **client_options)
    except TypeError as error:
        raise ArgumentError("client_options", str(error)) from None

    def new_client() -> OxlinClient:
        return OxlinClient(secret_id, secret, environment=where, **client_options)

    session = _Session(new_client, chosen, on_token)

    # Each resource is a plain function that dlt calls in its extract thread, where the
    # resource state is reachable; the async generator it returns runs on dlt's event loop.
    def users_data() -> AsyncIterator[list[dict[str, Any]]]:
        async def read(user_client: UserClient, user: BulkUser) -> dict[str, Any]:
            row: dict[str, Any] = {"key": user.key, "user_id": None, "email": user.email,
                                   "creation_date": None}
            try:
                me = await user_client.users.me()
            except PermissionDeniedError:  # a token without the `profile` scope
                return row
            row.update(user_id=me.id, email=me.email, creation_date=me.creation_date)
            return row

        async def rows() -> AsyncIterator[list[dict[str, Any]]]:
            async with session.client() as client:
                async for some in _per_user(chosen, concurrency, lambda u: session.signed_in(
                        client, u, "users", lambda uc: read(uc, u))):
                    yield some
        return rows()

    def accounts_data() -> AsyncIterator[list[dict[str, Any]]]:
        async def read(user_client: UserClient, user: BulkUser) -> list[dict[str, Any]]:
            return [{"id": a.id, "user": user.key, "connection_id": a.connection_id,
                     "name": a.name, "type": str(a.type), "status": str(a.status),
                     "currency": a.currency, "balance": a.balance,
                     "balance_date": a.balance_date, "creation_date": a.creation_date,
                     "iban": a.iban, "usage": None if a.usage is None else str(a.usage)}
                    for a in await user_client.accounts.list().collect()]

        async def rows() -> AsyncIterator[list[dict[str, Any]]]:
            async with session.client() as client:
                async for accounts in _per_user(chosen, concurrency, lambda u: session.signed_in(
                        client, u, "accounts", lambda uc: read(uc, u))):
                    yield [account for some in accounts for account in some]
        return rows()

    def transactions_data() -> AsyncIterator[Any]:
        state = dlt.current.resource_state("transactions")
        cursors: dict[str, str] = state.setdefault(CURSORS, {})

        def filter_for(user: BulkUser) -> TransactionFilter | None:
            cursor = cursors.get(user.key)
            if cursor is None:
                return None  # the first load of this user: `since`, or everything
            return TransactionFilter(since=dt.datetime.fromisoformat(cursor))

        def user_done(report: UserReport) -> None:
            if report.status == "failed":
                _failed("transactions", report.user, report.error_type, report.error)
            elif report.last_import_date is not None:
                old = cursors.get(report.user)
                if old is None or dt.datetime.fromisoformat(old) < report.last_import_date:
                    cursors[report.user] = report.last_import_date.isoformat()

        async def pages() -> AsyncIterator[Any]:
            async with session.client() as client, client.bulk_transactions(
                    session.users(chosen), concurrency=concurrency,
                    per_user_concurrency=per_user_concurrency, filter=first,
                    filter_for=filter_for, on_user_done=user_done,
                    on_token=session.token) as run:
                async for batch in run:
                    if batch.transactions:
                        yield _page_table(batch)
        return pages()

    @dlt.source(name=name, max_table_nesting=0)
    def source() -> list[DltResource]:
        return [
            dlt.resource(users_data, name="users", primary_key="key",
                         write_disposition="merge"),
            dlt.resource(accounts_data, name="accounts", primary_key="id",
                         write_disposition="merge", columns={"balance": _MONEY}),
            dlt.resource(transactions_data, name="transactions", primary_key="id",
                         write_disposition="merge"),
        ]

    return source()
