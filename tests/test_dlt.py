"""The dlt source (`oxlin_async.dlt`): loaded into duckdb against the emulator over real
sockets (through a recording proxy, to see the queries the API receives), compared with
the ground truth."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import dlt
import duckdb
import pytest
from _helpers import (
    TX,
    Proxy,
    Truth,
    assert_exact,
    assert_rows,
    recording_proxy,
    records,
    requests,
    row_truth,
    truth,
)

import oxlin_async as ox
from oxlin_async.bulk import BulkUser
from oxlin_async.dlt import CURSORS, oxlin_source, shard_of, shard_pipeline
from oxlin_async.testing import Faults, OxlinSandbox

USERS = 12


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    # dlt reports usage to its makers by default; tests make no such call
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")


@attrs.frozen
class Box:
    sandbox: OxlinSandbox
    proxy: Proxy


@pytest.fixture
async def box() -> AsyncIterator[Box]:
    async with OxlinSandbox(users=USERS, seed=41, transactions_per_account=60) as sandbox, \
            recording_proxy(sandbox) as proxy:
        yield Box(sandbox, proxy)


def users_of(sandbox: OxlinSandbox) -> list[BulkUser]:
    return [BulkUser.with_password(u.email, u.password) for u in sandbox.users]


def source(box: Box, users: Iterable[BulkUser] | None = None, **options: Any) -> Any:
    return oxlin_source(users_of(box.sandbox) if users is None else users,
                        client_id=box.sandbox.client_id,
                        client_secret=box.sandbox.client_secret,
                        environment=box.proxy.environment, retry=ox.RetryPolicy(
                            initial_backoff=0.001, max_backoff=0.005), **options)


def pipeline(tmp_path: Path, name: str = "oxlin", **options: Any) -> Any:
    warehouse = dlt.destinations.duckdb(str(tmp_path / "warehouse.duckdb"))
    return dlt.pipeline(name, destination=warehouse, dataset_name="oxlin",
                        pipelines_dir=str(tmp_path / "pipelines"), **options)


async def load(p: Any, data: Any) -> Any:
    # dlt's run is blocking: off this loop, which serves the emulator
    return await asyncio.to_thread(p.run, data)


def table(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        cursor = db.execute(f'SELECT * FROM oxlin."{name}"')
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def loaded(tmp_path: Path) -> Truth:
    rows = table(tmp_path, "transactions")
    got = {(r["user"], r["id"]): (r["account_id"], r["amount"]) for r in rows}
    assert len(got) == len(rows), "a transaction loaded twice"
    return got


def owners(sandbox: OxlinSandbox) -> dict[str, str]:
    """Account id -> the e-mail of its user."""
    return {str(a): u.email for u in sandbox.users
            for a in sandbox.state.data(int(u.id)).accounts}


def newest_imports(sandbox: OxlinSandbox) -> dict[str, int]:
    return {email: max(t.import_date for t in txs) for email, txs in records(sandbox).items()}


def add_imports(sandbox: OxlinSandbox, emails: Iterable[str], at: int) -> int:
    """A bank sync for these users: one new transaction per account, imported `at`."""
    added = 0
    for user in sandbox.users:
        if user.email not in emails:
            continue
        data = sandbox.state.data(int(user.id))
        for account_id, txs in data.transactions.items():
            txs.append(attrs.evolve(txs[0], id=sandbox.state.new_id("transaction"),
                                    account_id=account_id, import_date=at,
                                    amount_cents=-12_345 - added, label="new import"))
            added += 1
    return added


# ------------------------------------------------------------------ load twice
async def test_two_loads_merge_exactly_and_the_second_asks_only_for_new_imports(
        box: Box, tmp_path: Path) -> None:
    sandbox, queries = box.sandbox, box.proxy.queries
    p = pipeline(tmp_path)
    info = await load(p, source(box))
    assert not info.has_failed_jobs
    assert_exact(loaded(tmp_path), truth(sandbox))
    assert_rows(table(tmp_path, "transactions"), row_truth(sandbox))  # every column exact
    assert all("start_import_date" not in q for q in queries)  # the first load: everything

    # transactions arrive as Arrow tables: dlt writes them as Parquet, the others per row
    jobs = [Path(j.file_path).name for package in info.load_packages
            for j in package.jobs["completed_jobs"]]
    assert any(j.startswith("transactions.") and j.endswith(".parquet") for j in jobs)
    assert not any(j.startswith(("users.", "accounts.")) and j.endswith(".parquet")
                   for j in jobs)

    users = {r["key"]: r for r in table(tmp_path, "users")}
    assert users == {u.email: {**users[u.email], "user_id": u.id, "email": u.email}
                     for u in sandbox.users}
    accounts = {r["id"]: r for r in table(tmp_path, "accounts")}
    want_accounts = {str(a.id): (u.email, Decimal(a.balance_cents).scaleb(-2), a.type,
                                 str(a.connection_id))
                     for u in sandbox.users
                     for a in sandbox.state.data(int(u.id)).accounts.values()}
    assert {k: (r["user"], r["balance"], r["type"], r["connection_id"])
            for k, r in accounts.items()} == want_accounts

    # Between the loads, a bank sync imports new transactions for three users.
    cursors = newest_imports(sandbox)
    later = max(cursors.values()) + 3600
    added = add_imports(sandbox, [u.email for u in sandbox.users[:3]], later)
    queries.clear()
    before = requests(sandbox, TX)
    info = await load(p, source(box))
    assert not info.has_failed_jobs
    assert_exact(loaded(tmp_path), truth(sandbox))  # the new ones in, nothing twice
    assert len(loaded(tmp_path)) == sum(len(t) for t in records(sandbox).values())

    # Each user was asked only from its own newest import (inclusive: docs/oxlin-api §9),
    # so the server sent the boundary rows and the new ones, not the history again.
    owner = owners(sandbox)
    assert queries and requests(sandbox, TX) - before == len(queries)
    for q in queries:
        user = owner[q["account_id"]]
        assert q["start_import_date"] == str(cursors[user]), (user, q)
    again = {(e, str(t.id)) for e, txs in records(sandbox).items() for t in txs
             if t.import_date >= cursors[e]}
    assert p.last_trace.last_normalize_info.row_counts["transactions"] == len(again)
    assert added < len(again) < len(truth(sandbox)) // 4

    # the cursors moved to the new imports, and a third load finds only those again
    state = p.state["sources"]["oxlin"]["resources"]["transactions"][CURSORS]
    new_cursor = dt.datetime.fromtimestamp(later, dt.timezone.utc).isoformat()
    assert [state[u.email] for u in sandbox.users[:3]] == [new_cursor] * 3
    info = await load(p, source(box))
    assert_exact(loaded(tmp_path), truth(sandbox))
    assert p.last_trace.last_normalize_info.row_counts["transactions"] == len(
        {(e, str(t.id)) for e, txs in records(sandbox).items() for t in txs
         if t.import_date >= (later if e in {u.email for u in sandbox.users[:3]}
                              else cursors[e])})


async def test_since_bounds_a_users_first_load_and_a_new_user_gets_its_history(
        box: Box, tmp_path: Path) -> None:
    sandbox = box.sandbox
    everyone = users_of(sandbox)
    imports = sorted(t.import_date for txs in records(sandbox).values() for t in txs)
    since = imports[len(imports) // 2]
    p = pipeline(tmp_path)
    await load(p, source(box, everyone[:-1], since=since))
    want = truth(sandbox, lambda t: t.import_date >= since,
                 only=[u.key for u in everyone[:-1]])
    assert_exact(loaded(tmp_path), want)
    assert {q["start_import_date"] for q in box.proxy.queries} == {str(since)}

    # The last user joins: its own first load, from `since`, while the others go on
    # from their cursors (one cursor for all would have skipped its older imports).
    box.proxy.queries.clear()
    await load(p, source(box, everyone, since=since))
    assert_exact(loaded(tmp_path), truth(sandbox, lambda t: t.import_date >= since))
    owner, newest = owners(sandbox), newest_imports(sandbox)
    for q in box.proxy.queries:
        user = owner[q["account_id"]]
        want_since = since if user == everyone[-1].key else newest[user]
        assert q["start_import_date"] == str(want_since), (user, q)


async def test_exact_under_latency_and_injected_faults(tmp_path: Path) -> None:
    faults = Faults.uniform(0.1, seed=9, retry_after=0, latency=0.005, jitter=0.01)
    async with OxlinSandbox(users=20, seed=43, transactions_per_account=40,
                            faults=faults) as sandbox, recording_proxy(sandbox) as proxy:
        box = Box(sandbox, proxy)
        p = pipeline(tmp_path)
        for _ in range(2):
            info = await load(p, source(box))
            assert not info.has_failed_jobs
            assert_exact(loaded(tmp_path), truth(sandbox))
            assert {r["key"] for r in table(tmp_path, "users")} == {
                u.email for u in sandbox.users}
            assert len(table(tmp_path, "accounts")) == sum(
                len(sandbox.state.data(int(u.id)).accounts) for u in sandbox.users)
        assert sum(sandbox.state.counters.faults.values()) > 20


# ------------------------------------------------------------------ secrets
def _found(root: Path, needles: Iterable[str]) -> set[str]:
    """The needles found in any file under `root`, gzip files read decompressed."""
    found: set[str] = set()
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        found.update(n for n in needles if n.encode() in data)
    return found


async def test_no_secret_in_state_pipeline_files_database_or_logs(
        box: Box, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    sandbox = box.sandbox
    caplog.set_level(logging.DEBUG)
    # a token user too, and a user whose password is wrong (its failure is logged)
    tokened = sandbox.users[1]
    access = sandbox.state.issue_token(sandbox.client_id, int(tokened.id),
                                       frozenset({"accounts_read", "transactions_read",
                                                  "profile"})).value
    refresh = sandbox.state.issue_refresh_token(sandbox.client_id, int(tokened.id),
                                                frozenset({"accounts_read"})).value
    wrong = "not-the-password-" + "x" * 12
    users = [BulkUser.with_password(sandbox.users[0].email, sandbox.users[0].password),
             BulkUser.with_token(access, refresh),
             BulkUser.with_password(sandbox.users[2].email, wrong)]
    p = pipeline(tmp_path)
    await load(p, source(box, users))
    await load(p, source(box, users))

    issued = [*sandbox.state.tokens, *sandbox.state.refresh_tokens]
    secrets = {sandbox.client_secret, sandbox.users[0].password, wrong, access, refresh,
               *issued}
    visible = {sandbox.users[0].email, users[1].key}  # the search can see what is there
    assert len(issued) >= 4

    assert _found(tmp_path / "pipelines", secrets | visible) == visible
    text = repr(p.state) + repr(p.last_trace) + repr(p.last_trace.asdict())
    assert all(s not in text for s in secrets)
    assert not any(s.encode() in (tmp_path / "warehouse.duckdb").read_bytes() for s in secrets)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        dump = repr([db.execute(f'SELECT * FROM {schema}."{name}"').fetchall()
                     for schema, name in db.execute(
                         "SELECT table_schema, table_name FROM information_schema.tables"
                         ).fetchall()])
    assert all(v in dump for v in visible)
    assert all(s not in dump for s in secrets)
    out, err = capfd.readouterr()  # what dlt printed or logged itself
    logs = "\n".join([r.getMessage() for r in caplog.records] + [out, err])
    assert sandbox.users[2].email in logs  # the failed user is reported, by its key
    assert all(s not in logs for s in secrets)

    # the failed user: no rows, no cursor, so the next load retries it in full
    state = p.state["sources"]["oxlin"]["resources"]["transactions"][CURSORS]
    assert set(state) == {sandbox.users[0].email, users[1].key}
    got = loaded(tmp_path)
    assert {u for u, _ in got} == {sandbox.users[0].email, users[1].key}
    assert len(got) == len(truth(sandbox, only=[sandbox.users[0].email])) + len(
        records(sandbox)[tokened.email])


@pytest.mark.parametrize("one_by_one", [False, True])
async def test_token_users_spend_each_refresh_token_once_across_the_resources(
        box: Box, tmp_path: Path, one_by_one: bool) -> None:
    # dlt runs the resources side by side; loaded one by one, each resource starts from
    # the pair the previous one rotated to
    sandbox = box.sandbox
    scopes = frozenset({"accounts_read", "transactions_read", "profile"})
    seeded = sandbox.users[:3]
    pairs = {u.email: (sandbox.state.issue_token(sandbox.client_id, int(u.id), scopes).value,
                       sandbox.state.issue_refresh_token(sandbox.client_id, int(u.id),
                                                         scopes).value) for u in seeded}
    keys = {e: BulkUser.with_token(*pair).key for e, pair in pairs.items()}
    for u in seeded:  # revoked by the server: each user's first request gets a 401
        sandbox.state.expire_tokens(int(u.id))
    kept: dict[str, tuple[str, str | None]] = {}

    def keep(user: BulkUser, token: ox.Token) -> None:
        kept[user.key] = (token.access_token, token.refresh_token)

    p = pipeline(tmp_path)
    users = [BulkUser.with_token(*pairs[u.email]) for u in seeded]
    data = source(box, users, on_token=keep)
    if one_by_one:
        for name in ("users", "accounts", "transactions"):
            await load(p, data.with_resources(name))
    else:
        await load(p, data)
    # one refresh per user, shared by the three resources, and every table has them all
    assert sandbox.state.counters.grants["refresh_token"] == len(seeded)
    assert set(kept) == set(keys.values())
    assert all(kept[k][1] != pairs[e][1] for e, k in keys.items())  # rotated
    want = {(keys[e], i): v for (e, i), v in truth(sandbox, only=pairs).items()}
    assert_exact(loaded(tmp_path), want)
    assert {r["key"] for r in table(tmp_path, "users")} == set(keys.values())
    assert {r["user"] for r in table(tmp_path, "accounts")} == set(keys.values())

    # the next load starts from the kept pairs, under the same keys
    again = [BulkUser.with_token(*kept[keys[u.email]], key=keys[u.email]) for u in seeded]
    for u in seeded:
        sandbox.state.expire_tokens(int(u.id))
    await load(p, source(box, again, on_token=keep))
    assert sandbox.state.counters.grants["refresh_token"] == 2 * len(seeded)
    assert_exact(loaded(tmp_path), want)


# ------------------------------------------------------------------ shards
async def test_one_pipeline_per_shard_loads_every_user_once(box: Box, tmp_path: Path) -> None:
    sandbox = box.sandbox
    count = 3
    shards = {u.email: shard_of(u.email, count) for u in sandbox.users}
    assert len(set(shards.values())) == count  # each shard has someone to load
    for index in range(count):
        p = shard_pipeline((index, count), destination=dlt.destinations.duckdb(
            str(tmp_path / "warehouse.duckdb")), dataset_name="oxlin",
            pipelines_dir=str(tmp_path / "pipelines"))
        assert p.pipeline_name == f"oxlin-{index:05d}-of-{count:05d}"
        await load(p, source(box, shard=(index, count)))
        cursors = p.state["sources"]["oxlin"]["resources"]["transactions"][CURSORS]
        assert set(cursors) == {e for e, s in shards.items() if s == index}
    assert_exact(loaded(tmp_path), truth(sandbox))
    assert {r["key"] for r in table(tmp_path, "users")} == set(shards)


def test_the_shard_of_a_user_is_stable_across_processes() -> None:
    # SHA-256 of the key, not Python's per-process salted hash: these values hold on any
    # machine, and are the sharded export's (a user's rows and its export part agree)
    assert [shard_of(f"user{i}@example.com", 64) for i in range(4)] == [0, 17, 11, 55]
    assert shard_of("token:0123456789abcdef01234567", 16) == 4
    code = "from oxlin_async.dlt import shard_of; print(shard_of('user3@example.com', 64))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "55"
    assert shard_of("user0@example.com", 1) == 0
    spread = {shard_of(f"user{i}@example.com", 8) for i in range(200)}
    assert spread == set(range(8))


@pytest.mark.parametrize(("options", "name"), [
    ({"shard": (2, 2)}, "shard"), ({"shard": (0, 0)}, "shard"), ({"shard": 1}, "shard"),
    ({"shard": (True, 2)}, "shard"), ({"concurrency": 0}, "concurrency"),
    ({"per_user_concurrency": "4"}, "per_user_concurrency"),
    ({"client_secret": ""}, "client_secret"),
    ({"since": dt.datetime(2025, 1, 1)}, "since"),  # naive: which instant?
    ({"retries": 3}, "client_options"),  # not an OxlinClient option
])
def test_bad_options_fail_before_any_request(options: dict[str, Any], name: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OXLIN_CLIENT_SECRET", raising=False)
    kwargs: dict[str, Any] = {"client_id": "id", "client_secret": "secret", **options}
    with pytest.raises(ox.ArgumentError) as caught:
        oxlin_source([("a@example.com", "pw")], **kwargs)
    assert caught.value.argument == name
    assert "secret" not in str(caught.value) or name == "client_secret"


def test_users_must_be_users() -> None:
    with pytest.raises(ox.ArgumentError, match="users"):
        oxlin_source("a@example.com", client_id="id", client_secret="s")
    with pytest.raises(ox.ArgumentError, match="users"):
        oxlin_source([42], client_id="id", client_secret="s")  # type: ignore[list-item]



def test_the_core_does_not_import_dlt() -> None:
    # dlt is an extra: the SDK, the CLI and the emulator load without it
    code = ("import sys, oxlin_async, oxlin_async.bulk, oxlin_async.cli, oxlin_async.testing; "
            "print(sorted(m for m in sys.modules if m == 'dlt' or m.startswith('dlt.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
