"""The bulk fetcher (`client.bulk_transactions`) against the emulator's ground truth.

Every test compares what the run delivered with ``sandbox.state``: the set of
(user, transaction id) pairs, the amounts, and the count, so that a lost, duplicated or
altered transaction fails the test whatever else happens (faults, expiring tokens,
failing users, a run broken off and resumed from its checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from _helpers import amount_of, assert_exact, delivered, drain, records, truth, users_of

import oxlin_async as ox
from oxlin_async.bulk import Batch, BulkResult, BulkUser, Checkpoint, Progress
from oxlin_async.errors import ArgumentError
from oxlin_async.testing import OxlinSandbox
from oxlin_async.testing._faults import Faults
from oxlin_async.testing._records import Transaction as Record

PARIS = ZoneInfo("Europe/Paris")
FAST_RETRY = ox.RetryPolicy(max_retries=12, initial_backoff=0.001, max_backoff=0.005)


# ----------------------------------------------------------------------------- helpers


def server_requests(box: OxlinSandbox) -> int:
    return sum(box.state.counters.requests.values())


@contextlib.asynccontextmanager
async def client_for(box: OxlinSandbox, retry: ox.RetryPolicy | None = None
                     ) -> AsyncIterator[ox.OxlinClient]:
    async with ox.OxlinClient(box.client_id, box.client_secret, environment=box.environment,
                              retry=retry) as client:
        yield client


def assert_reports(result: BulkResult, box: OxlinSandbox, *, exact_requests: bool) -> None:
    """Each user's report agrees with the ground truth and with itself."""
    by_key = {r.user: r for r in result.users}
    assert len(by_key) == len(result.users) == len(box.users)
    over = 0  # the categories' names, read once per run, with one user's token
    for user in box.users:
        report, data = by_key[user.email], box.state.data(int(user.id))
        txs = [t for ts in data.transactions.values() for t in ts]
        assert report.status == "done", report
        assert report.error is None and report.error_type is None
        assert report.user_id == user.id
        assert report.accounts == len(data.accounts)
        assert report.accounts_skipped == 0
        assert report.transactions == len(txs)
        # no account holds more than one page (500) in these populations
        assert report.pages == sum(1 for ts in data.transactions.values() if ts)
        assert report.last_import_date == dt.datetime.fromtimestamp(
            max(t.import_date for t in txs), dt.timezone.utc)
        # one token, the accounts, the user (for its id), one request per page (and for
        # one user of the run, the categories); each failed attempt adds a request and
        # a retry
        assert report.retries >= 0
        if exact_requests:
            assert report.requests - report.retries in (3 + report.pages,
                                                         4 + report.pages), report
            over += report.requests - report.retries - (3 + report.pages)
    if exact_requests:
        assert over == 1
    assert result.transactions == sum(r.transactions for r in result.users)
    assert result.ok and result.failed == []


# ------------------------------------------------------------------------- exactness
async def test_200_users_exact_with_consistent_reports() -> None:
    async with OxlinSandbox(users=200, seed=21, transactions_per_account=20) as box, \
            client_for(box) as client:
        run = client.bulk_transactions(users_of(box), concurrency=16)
        batches = await drain(run)
        assert_exact(delivered(batches), truth(box))
        assert run.result is not None
        assert_reports(run.result, box, exact_requests=True)
        assert sum(r.retries for r in run.result.users) == 0
        # the reports account for every request the server saw
        assert sum(r.requests for r in run.result.users) == server_requests(box)
        assert box.state.counters.grants == Counter({"password": 200})


async def test_200_users_exact_under_faults() -> None:
    faults = Faults.uniform(0.1, seed=5, retry_after=0)
    async with OxlinSandbox(users=200, seed=22, transactions_per_account=20,
                            faults=faults) as box, client_for(box, FAST_RETRY) as client:
        run = client.bulk_transactions(users_of(box), concurrency=16)
        batches = await drain(run)
        assert_exact(delivered(batches), truth(box))
        assert run.result is not None
        assert_reports(run.result, box, exact_requests=True)
        injected = sum(box.state.counters.faults.values())
        retries = sum(r.retries for r in run.result.users)
        assert injected > 20 and retries > 20
        assert set(box.state.counters.faults) >= {"429", "500", "502", "503", "drop",
                                                  "truncate"}
        # every failed attempt was retried and shows in the reports
        assert retries == injected
        assert sum(r.requests for r in run.result.users) == server_requests(box)


async def test_exact_when_tokens_are_revoked_mid_run() -> None:
    async with OxlinSandbox(users=200, seed=23, transactions_per_account=20) as box, \
            client_for(box) as client:
        run = client.bulk_transactions(users_of(box), concurrency=16, buffer=8)
        batches: list[Batch] = []
        revoked = 0
        async for batch in run:
            batches.append(batch)
            if len(batches) % 40 == 0:
                revoked += box.expire_tokens()
        assert revoked > 0
        assert_exact(delivered(batches), truth(box))
        assert run.result is not None and run.result.ok
        assert box.state.counters.grants["refresh_token"] > 0


async def test_exact_when_tokens_expire_by_lifetime() -> None:
    # 1 s tokens; each user's walk (a token, the accounts, the user, then 3 accounts of 3
    # pages, one request at a time, 100 ms each) lasts longer, so every user renews its
    # token mid-walk.
    async with OxlinSandbox(users=3, seed=24, transactions_per_account=1100, token_lifetime=1,
                            faults=Faults(latency=0.1)) as box, client_for(box) as client:
        run = client.bulk_transactions(users_of(box), per_user_concurrency=1)
        batches = await drain(run)
        assert_exact(delivered(batches), truth(box))
        assert run.result is not None and run.result.ok
        assert box.state.counters.grants["refresh_token"] >= 3


# ------------------------------------------------------------------ failing users
async def test_failing_users_are_reported_and_the_others_delivered() -> None:
    async with OxlinSandbox(users=6, seed=25, transactions_per_account=30) as box, \
            client_for(box, FAST_RETRY) as client:
        good = box.users[:5]
        wrong = box.users[5]
        users = [BulkUser.with_password(good[0].email, good[0].password),
                 BulkUser.with_password(wrong.email, "not-the-password"),
                 *(BulkUser.with_password(u.email, u.password) for u in good[1:3]),
                 BulkUser.with_token("at_bogus-token", key="bogus-token"),
                 BulkUser.with_password("not-an-email", "whatever-pass"),
                 *(BulkUser.with_password(u.email, u.password) for u in good[3:])]
        progress: list[Progress] = []
        run = client.bulk_transactions(users, concurrency=3, on_progress=progress.append)
        batches = await asyncio.wait_for(drain(run), 10)  # a bad e-mail used to hang it
        assert_exact(delivered(batches), truth(box, only=[u.email for u in good]))
        result = run.result
        assert result is not None and not result.ok
        reports = {r.user: r for r in result.users}
        assert len(reports) == len(users)
        failed = {r.user: r for r in result.failed}
        assert set(failed) == {wrong.email, "bogus-token", "not-an-email"}
        assert failed[wrong.email].error_type == "InvalidGrantError"
        assert failed["bogus-token"].error_type == "AuthenticationError"
        assert failed["not-an-email"].error_type == "ArgumentError"
        for report in failed.values():
            assert report.status == "failed" and report.error
            assert report.transactions == 0 and report.pages == 0
            assert "not-the-password" not in report.error  # no secret in a message
        assert "invalid_grant" in (failed[wrong.email].error or "")
        assert "email" in (failed["not-an-email"].error or "")
        for u in good:
            assert reports[u.email].status == "done"
        assert progress[-1].users_failed == 3 and progress[-1].users_done == 5


async def test_a_failing_users_source_ends_the_run_with_its_error() -> None:
    async with OxlinSandbox(users=3, seed=26, transactions_per_account=20) as box, \
            client_for(box) as client:
        async def source() -> AsyncIterator[BulkUser]:
            yield users_of(box)[0]
            raise RuntimeError("the users table went away")

        run = client.bulk_transactions(source())
        with pytest.raises(RuntimeError, match="went away"):
            await asyncio.wait_for(drain(run), 10)  # it used to wait for the end forever


# ------------------------------------------------------------------------- filters
async def test_filters_are_carried() -> None:
    today = dt.datetime.now(PARIS).date()
    start, end = today - dt.timedelta(days=400), today - dt.timedelta(days=30)
    low = int(dt.datetime.combine(start, dt.time(), PARIS).timestamp())
    high = int(dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), PARIS).timestamp())

    def keep(t: Record) -> bool:
        return (low <= t.date < high and amount_of(t) >= Decimal("-40")
                and t.status in ("BOOKED", "PENDING"))

    async with OxlinSandbox(users=8, seed=27, transactions_per_account=50) as box, \
            client_for(box) as client:
        want = truth(box, keep)
        assert 0 < len(want) < len(truth(box)) // 2  # the filters do cut
        run = client.bulk_transactions(
            users_of(box), start_date=start, end_date=end, min_amount=Decimal("-40"),
            statuses=[ox.TransactionStatus.BOOKED, "PENDING"])
        batches = await drain(run)
        assert_exact(delivered(batches), want)
        assert run.result is not None and run.result.ok
        assert run.result.transactions == len(want)


async def test_since_is_the_start_import_date() -> None:
    async with OxlinSandbox(users=6, seed=28, transactions_per_account=40) as box, \
            client_for(box) as client:
        imports = sorted(t.import_date for txs in records(box).values() for t in txs)
        threshold = imports[len(imports) // 2]
        want = truth(box, lambda t: t.import_date >= threshold)
        assert 0 < len(want) < len(imports)
        since = dt.datetime.fromtimestamp(threshold, dt.timezone.utc)
        run = client.bulk_transactions(users_of(box), since=since)
        batches = await drain(run)
        assert_exact(delivered(batches), want)
        assert all(tx.import_date >= since for b in batches for tx in b.transactions)
        assert run.result is not None
        newest = {u: max(t.import_date for t in txs) for u, txs in records(box).items()}
        for report in run.result.users:
            if report.transactions:
                assert report.last_import_date == dt.datetime.fromtimestamp(
                    newest[report.user], dt.timezone.utc)
        # epoch seconds work too, and the next incremental run starts where this one ended
        run = client.bulk_transactions(users_of(box), since=threshold + 1)
        later = delivered(await drain(run))
        assert later == {k: v for k, v in want.items()
                         if k in truth(box, lambda t: t.import_date > threshold)}


# ---------------------------------------------------------------------- backpressure
async def test_a_slow_consumer_bounds_the_fetching() -> None:
    # 2 users x 2 accounts x 6 pages: a fetcher that ignored the consumer would have
    # fetched all 24 pages while the consumer still sleeps over the first ones.
    concurrency, per_user, buffer, accounts = 1, 2, 2, 2
    async with OxlinSandbox(users=2, seed=29, accounts_per_user=accounts,
                            transactions_per_account=2600) as box, client_for(box) as client:
        run = client.bulk_transactions(users_of(box), concurrency=concurrency,
                                       per_user_concurrency=per_user, buffer=buffer)
        pages = box.state.counters.requests
        # what may be fetched and not yet consumed: the queue, plus for each account
        # walked at once the page waiting to be queued and the paginator's look-ahead,
        # plus for each finished account the look-ahead request past its last page
        ahead = buffer + concurrency * accounts * (1 + per_user) + 2 * accounts
        consumed, most_ahead = 0, 0
        batches: list[Batch] = []
        async for batch in run:
            batches.append(batch)
            consumed += 1
            await asyncio.sleep(0.03)
            fetched = pages["GET /api/v2.1/transactions"]
            most_ahead = max(most_ahead, fetched - consumed)
            assert fetched <= consumed + ahead, (fetched, consumed)
        assert consumed == 24
        assert 1 <= most_ahead <= ahead < 24 - 2  # it fetched ahead, but not everything
        assert_exact(delivered(batches), truth(box))


# -------------------------------------------------------------------------- progress
async def test_progress_counts_grow_and_end_complete() -> None:
    async with OxlinSandbox(users=10, seed=30, transactions_per_account=20) as box, \
            client_for(box) as client:
        seen: list[Progress] = []
        run = client.bulk_transactions(users_of(box), concurrency=3, on_progress=seen.append,
                                       progress_interval=0)
        await drain(run)
        assert len(seen) > 10
        for before, after in itertools.pairwise(seen):
            for field in ("users_done", "users_failed", "transactions", "requests",
                          "retries", "elapsed"):
                assert getattr(after, field) >= getattr(before, field), (field, before, after)
        last = seen[-1]
        assert last.users_total == 10 and last.users_done == 10 and last.users_failed == 0
        assert last.transactions == len(truth(box))
        assert last.requests == server_requests(box)
        assert any(0 < p.users_done < 10 for p in seen)

        # users from an async iterable: the total is unknown, the end is still reported
        async def source() -> AsyncIterator[BulkUser]:
            for user in users_of(box)[:4]:
                yield user

        seen.clear()
        await drain(client.bulk_transactions(source(), on_progress=seen.append))
        assert seen[-1].users_total is None and seen[-1].users_done == 4


# ------------------------------------------------------------------------ checkpoint
def _leftover(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() - before
            if not t.done() and t is not asyncio.current_task()]


async def test_checkpoint_resume_delivers_everything_once(tmp_path: Path) -> None:
    path = tmp_path / "run.checkpoint"
    # 4 users x 3 accounts x 3 pages (500, 500, 100): pages of accounts interleave
    async with OxlinSandbox(users=4, seed=31, transactions_per_account=1100) as box, \
            client_for(box) as client:
        want = truth(box)
        before = asyncio.all_tasks()
        consumed = 0
        run = client.bulk_transactions(
            users_of(box), concurrency=2, per_user_concurrency=2, buffer=2, checkpoint=path,
            checkpoint_extra=lambda: {"consumed": consumed})
        first: list[Batch] = []
        async for batch in run:
            first.append(batch)
            consumed += 1
            if consumed == 14:
                break
        await run.aclose()
        assert _leftover(before) == [], "the broken-off run left tasks running"
        assert run.checkpoint is not None
        run.checkpoint.close()

        # What the checkpoint holds: accounts whose pages were all consumed.
        saved = Checkpoint(path)
        assert 0 < len(saved.accounts) < 12
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        done_at = [line["extra"]["consumed"] for line in lines if "account" in line]
        assert done_at == sorted(done_at) and all(n <= consumed for n in done_at)
        assert saved.last_extra == {"consumed": done_at[-1]}
        kept = [b for b in first if (b.user, b.account.id) in saved.accounts]
        for user, account in saved.accounts:
            assert {k for k, v in delivered(kept).items() if k[0] == user and v[0] == account} \
                == {k for k, v in want.items() if k[0] == user and v[0] == account}
        # a torn last line (a kill mid-write) is ignored
        with path.open("a") as f:
            f.write('{"user": "user0000.s31@example.com", "acc')
        assert Checkpoint(path).accounts == saved.accounts

        second = client.bulk_transactions(users_of(box), concurrency=2, checkpoint=str(path))
        rest = await drain(second)
        assert not {(b.user, b.account.id) for b in rest} & saved.accounts
        assert_exact(delivered(kept + rest), want)
        result = second.result
        assert result is not None and result.ok
        for report in result.users:
            skipped = sum(1 for user, _ in saved.accounts if user == report.user)
            if report.user in saved.users:
                assert report.status == "skipped" and report.requests == 0
            else:
                assert report.status == "done" and report.accounts_skipped == skipped
        assert second.checkpoint is not None
        second.checkpoint.close()

        # a third run finds everything done: no request at all
        requests = server_requests(box)
        third = client.bulk_transactions(users_of(box), checkpoint=path)
        assert await drain(third) == []
        assert third.result is not None
        assert {r.status for r in third.result.users} == {"skipped"}
        assert server_requests(box) == requests
        assert third.checkpoint is not None
        third.checkpoint.close()
        assert len(Checkpoint(path).users) == 4 and len(Checkpoint(path).accounts) == 12


async def test_breaking_out_without_aclose_still_cleans_up() -> None:
    async with OxlinSandbox(users=4, seed=32, transactions_per_account=1100) as box, \
            client_for(box) as client:
        before = asyncio.all_tasks()
        async for _ in client.bulk_transactions(users_of(box), concurrency=2, buffer=2):
            break
        # the abandoned generator is closed by the event loop soon after
        for _ in range(500):
            if not _leftover(before):
                break
            await asyncio.sleep(0.01)
        assert _leftover(before) == []


async def test_leaving_an_async_with_block_cancels_everything_at_once() -> None:
    async with OxlinSandbox(users=4, seed=32, transactions_per_account=1100) as box, \
            client_for(box) as client:
        before = asyncio.all_tasks()
        async with client.bulk_transactions(users_of(box), concurrency=2, buffer=2) as run:
            async for batch in run:
                assert batch.transactions
                break
            assert _leftover(before)  # still fetching inside the block
        assert _leftover(before) == []  # nothing left the moment the block is left
        assert run.result is None  # broken off: no result

        # an exception leaving the block does the same
        with pytest.raises(KeyError):
            async with client.bulk_transactions(users_of(box), concurrency=2) as run:
                async for _ in run:
                    raise KeyError("consumer failed")
        assert _leftover(before) == []

        # and a run read to the end inside the block has its result
        async with client.bulk_transactions(users_of(box)[:1]) as run:
            got = await drain(run)
        assert run.result is not None and run.result.ok
        assert_exact(delivered(got), truth(box, only=[box.users[0].email]))


# -------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("options", [
    {"concurrency": 0},
    {"concurrency": "4"},
    {"per_user_concurrency": 0},
    {"buffer": 0},
    {"account_id": "60000000"},
    {"sort": "date"},
    {"start_date": "2025-13-01"},
    {"end_date": dt.datetime(2025, 1, 1)},  # naive
    {"since": dt.datetime(2025, 1, 1)},  # naive
    {"min_amount": "a lot"},
    {"statuses": ["BOOKED", "NOPE"]},
    {"account_type": "PIGGY_BANK"},
], ids=lambda o: next(iter(o)))
async def test_bad_options_fail_before_any_request(options: dict[str, Any]) -> None:
    async with OxlinSandbox(users=1, seed=33, transactions_per_account=5) as box, \
            client_for(box) as client:
        with pytest.raises(ArgumentError):
            client.bulk_transactions(users_of(box), **options)
        assert server_requests(box) == 0
