"""`AsyncPaginator`'s bounds, exactly: the de-duplication window, the default look-ahead,
what a bad option says, and walks with no key.

Each test states one bound at its edge (an item reappearing just inside or just outside
the window, the peak number of requests in flight), so that an off-by-one in the
paginator fails here. The page sources are plain async functions over ids.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import aiohttp
import attrs
import pytest
from _helpers import new_client

import oxlin_async as ox
from oxlin_async import AsyncPaginator
from oxlin_async.testing import OxlinSandbox

# The paginator remembers the ids of the last max(prefetch + 2, 20_000 // page_size) pages
# (see the module docstring of oxlin_async/_pagination.py): an item seen on page p and
# served again on page p + window is dropped; on page p + window + 1 it comes out again.
DEDUPE_ITEMS = 20_000


@attrs.frozen
class Item:
    id: int


Fetch = Callable[[int, int], Coroutine[Any, Any, list[Item]]]


def grid(page_size: int, full_pages: int, *, moved: dict[int, Sequence[int]] | None = None,
         calls: list[tuple[int, int]] | None = None) -> Fetch:
    """`full_pages` full pages of consecutive ids, then an empty page. `moved[p]` lists ids
    served again at the start of page p, in place of that page's first ids (as if they had
    shifted there while the walk ran)."""
    moved = moved or {}

    async def fetch(page: int, limit: int) -> list[Item]:
        assert limit == page_size
        if calls is not None:
            calls.append((page, limit))
        if page > full_pages:
            return []
        ids = list(range((page - 1) * limit, page * limit))
        again = moved.get(page, ())
        ids[:len(again)] = again
        return [Item(i) for i in ids]

    return fetch


async def walked_ids(fetch: Fetch, **options: Any) -> list[int]:
    return [item.id async for item in AsyncPaginator(fetch, **options)]


# ---------------------------------------------------------------- the de-duplication window
@pytest.mark.parametrize(("page_size", "prefetch", "window"), [
    (500, 39, 41),  # prefetch + 2 pages: more than 20_000 // 500 = 40
    (100, 8, 200),  # 20_000 // 100 pages: more than prefetch + 2
    (300, 8, 66),   # 20_000 // 300 = 66.6: whole pages only
], ids=["prefetch-bound", "item-bound", "item-bound-rounded-down"])
async def test_an_item_reappearing_inside_the_window_comes_out_once(
        page_size: int, prefetch: int, window: int) -> None:
    assert window == max(prefetch + 2, DEDUPE_ITEMS // page_size)
    pages = window + 2
    # The first item of page 1 reappears `window` pages later: still remembered.
    ids = await walked_ids(grid(page_size, pages, moved={1 + window: [0]}),
                           page_size=page_size, prefetch=prefetch)
    assert ids.count(0) == 1
    assert len(ids) == pages * page_size - 1  # the served duplicate is the only one dropped
    assert ids == sorted(ids)

    # One page later it has left the window: it comes out again (memory stays bounded).
    ids = await walked_ids(grid(page_size, pages, moved={2 + window: [0]}),
                           page_size=page_size, prefetch=prefetch)
    assert ids.count(0) == 2
    assert len(ids) == pages * page_size


async def test_a_page_with_duplicates_leaves_the_window_like_any_other() -> None:
    page_size, prefetch, window = 500, 39, 41
    # Page 2 starts with an id of page 1 (dropped), so the paginator filters page 2 item
    # by item. Page 2's own items then reappear: the third just inside the window (dropped),
    # the second just outside it (it comes out again, as for a page without duplicates).
    second, third = page_size + 1, page_size + 2
    moved = {2: [7], 2 + window: [third], 3 + window: [second]}
    ids = await walked_ids(grid(page_size, window + 4, moved=moved),
                           page_size=page_size, prefetch=prefetch)
    assert ids.count(7) == 1
    assert ids.count(third) == 1
    assert ids.count(second) == 2


async def test_duplicates_within_one_page_come_out_once() -> None:
    fetch = grid(10, 2, moved={2: [10, 10, 3]})  # page 2: 10, 10, 3, 13, 14, ...
    ids = await walked_ids(fetch, page_size=10)
    assert ids == [*range(10), 10, *range(13, 20)]


async def test_a_walk_without_key_keeps_every_item_and_needs_no_id() -> None:
    async def fetch(page: int, limit: int) -> list[Any]:
        return [{"n": 1}, {"n": 1}, {"n": 2}][(page - 1) * limit:page * limit]

    paginator: AsyncPaginator[Any] = AsyncPaginator(fetch, page_size=2, key=None)
    assert await paginator.collect() == [{"n": 1}, {"n": 1}, {"n": 2}]
    assert await paginator.first() == {"n": 1}


# ------------------------------------------------------------ a server that ignores `page`
@pytest.mark.parametrize("page_size", [1, 3])
async def test_a_walk_without_key_stops_when_full_pages_repeat(page_size: int) -> None:
    # Without ids, only a page equal to the previous one shows the server ignores `page`;
    # prefetch + 2 such pages in a row stop the walk (the first page is new).
    calls: list[int] = []

    async def same_page(page: int, limit: int) -> list[Any]:
        calls.append(page)
        return [{"n": i} for i in range(limit)]

    paginator: AsyncPaginator[Any] = AsyncPaginator(same_page, page_size=page_size, prefetch=1,
                                                    key=None, max_pages=50)
    with pytest.raises(ox.PaginationError, match="brought no new item") as caught:
        await paginator.collect()
    assert caught.value.page == 1 + 3
    assert calls == [1, 2, 3, 4]


async def test_full_pages_of_items_already_seen_stop_the_walk_even_if_they_differ() -> None:
    # Pages 1 and 2 come again in turn (3 = 1, 4 = 2, ...): no page equals the one before,
    # yet none brings a new item.
    calls: list[int] = []
    source = grid(5, 2)

    async def alternating(page: int, limit: int) -> list[Item]:
        calls.append(page)
        return await source(2 - page % 2, limit)

    with pytest.raises(ox.PaginationError, match="brought no new item") as caught:
        await walked_ids(alternating, page_size=5, prefetch=1, max_pages=50)
    assert caught.value.page == 2 + 3
    assert calls == [1, 2, 3, 4, 5]


# ------------------------------------------------------------------- the default look-ahead
async def test_the_default_look_ahead_keeps_eight_requests_in_flight() -> None:
    in_flight, peaks = 0, []
    pages: list[int] = []
    source = grid(10, 40)

    async def fetch(page: int, limit: int) -> list[Item]:
        nonlocal in_flight
        pages.append(page)
        in_flight += 1
        peaks.append(in_flight)
        try:
            # a network's wait: the look-ahead grows only while the walk waits on one
            await asyncio.sleep(0.005)
            return await source(page, limit)
        finally:
            in_flight -= 1

    ids = await walked_ids(fetch, page_size=10)
    assert ids == list(range(400))
    # One page, then two, four, eight: the look-ahead doubles up to its default of 8.
    assert peaks[:3] == [1, 1, 2]
    assert max(peaks) == 8
    # 40 full pages and the empty 41st, and at most 7 more asked for in the look-ahead.
    assert sorted(pages) == list(range(1, len(pages) + 1))
    assert 41 <= len(pages) <= 48


class LookAhead:
    """The requests a walk started ahead of the pages it had handed out, at each request
    (a request that computes its answer runs in one step: counting the requests running
    at once would always say one)."""

    def __init__(self, answer: Fetch) -> None:
        self.answer = answer
        self.started = self.handed_out = 0
        self.ahead: list[int] = []

    async def fetch(self, page: int, limit: int) -> list[Item]:
        self.started += 1
        self.ahead.append(self.started - self.handed_out)
        return await self.answer(page, limit)

    async def walk(self, **options: Any) -> list[int]:
        ids = []
        async for page in AsyncPaginator(self.fetch, **options).pages():
            self.handed_out += 1
            ids += [item.id for item in page]
        return ids


def compute(seconds: float) -> None:
    """Reading and decoding: CPU, not waiting."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


async def test_a_server_that_answers_at_once_gets_no_look_ahead() -> None:
    """The look-ahead grows only while the walk waits on the network: pages that come at
    once (here: computed, no waiting at all) keep it at one page, mostly two at worst."""
    source = grid(10, 30)

    async def at_once(page: int, limit: int) -> list[Item]:
        compute(0.002)
        return await source(page, limit)

    walk = LookAhead(at_once)
    assert await walk.walk(page_size=10) == list(range(300))
    # waiting on a machine this busy for 4/5 of the time is what would make it grow
    assert max(walk.ahead) <= 2, walk.ahead
    assert walk.ahead.count(1) >= len(walk.ahead) // 2  # mostly one page at a time

    # The same count, for pages that do wait on a network: it grows to the default 8.
    async def waits(page: int, limit: int) -> list[Item]:
        await asyncio.sleep(0.005)
        return await source(page, limit)

    walk = LookAhead(waits)
    await walk.walk(page_size=10)
    assert max(walk.ahead) == 8, walk.ahead


class PeakTrace:
    """Requests to the API on the wire at once, seen by an aiohttp trace."""

    def __init__(self) -> None:
        self.in_flight = self.peak = 0

    def config(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._start)
        trace.on_request_end.append(self._end)
        trace.on_request_exception.append(self._end)
        return trace

    async def _start(self, session: Any, ctx: Any, params: Any) -> None:
        ctx.api = params.url.path.startswith("/api/")
        if ctx.api:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    async def _end(self, session: Any, ctx: Any, params: Any) -> None:
        if getattr(ctx, "api", False):
            self.in_flight -= 1


@pytest.fixture
async def traced(sandbox: OxlinSandbox) -> AsyncIterator[tuple[ox.UserClient, PeakTrace]]:
    trace = PeakTrace()
    async with aiohttp.ClientSession(trace_configs=[trace.config()]) as http, \
            new_client(sandbox, session=http) as client:
        user = sandbox.users[0]
        yield client.as_user(user.email, user.password), trace


async def test_transactions_list_looks_ahead_eight_pages_by_default(
        traced: tuple[ox.UserClient, PeakTrace], sandbox: OxlinSandbox) -> None:
    user, trace = traced
    await user.users.me()  # the token first: only list requests count below
    sandbox.set_faults(latency=0.1)
    trace.peak = 0
    before = sandbox.state.counters.requests["GET /api/v2.1/transactions"]
    got = await user.transactions.list(page_size=10).collect()
    assert len(got) == 300
    assert trace.peak == 8
    made = sandbox.state.counters.requests["GET /api/v2.1/transactions"] - before
    assert 31 <= made <= 31 + 7  # 30 full pages, the empty 31st, at most 7 looked ahead


# ------------------------------------------------------------------------- bad options
@pytest.mark.parametrize(("option", "value", "says"), [
    ("page_size", 0, "must be an int from 1 to 500, got 0"),
    ("page_size", 501, "must be an int from 1 to 500, got 501"),
    ("max_items", -1, "must be None or an int >= 0, got -1"),
    ("start_page", 0, "must be an int >= 1, got 0"),
    ("prefetch", True, "must be an int >= 1, got True"),
    ("max_pages", 0, "must be None or an int >= 1, got 0"),
    ("max_pages", True, "must be None or an int >= 1, got True"),
    ("max_pages", 2.0, "must be None or an int >= 1, got 2.0"),
])
async def test_a_bad_option_says_what_is_allowed_and_what_it_got(
        option: str, value: object, says: str) -> None:
    async def fetch(page: int, limit: int) -> list[Item]:
        raise AssertionError("no request expected")

    with pytest.raises(ox.ArgumentError) as raised:
        AsyncPaginator(fetch, **{option: value})
    assert raised.value.argument == option
    assert says in str(raised.value)


async def test_the_least_of_each_option_is_allowed() -> None:
    # One full page of one item, then nothing: max_pages=1 ends the walk in time.
    async def fetch(page: int, limit: int) -> list[Item]:
        return [Item(0)] if page == 1 else []

    paginator = AsyncPaginator(fetch, page_size=1, max_items=0, start_page=1, prefetch=1,
                               max_pages=1)
    assert (paginator.max_pages, paginator.page_size, paginator.prefetch) == (1, 1, 1)
    assert await paginator.collect() == []
    with pytest.raises(ox.PaginationError, match="max_pages=1"):
        await AsyncPaginator(fetch, page_size=1, max_pages=1).collect()


async def test_max_items_with_the_look_ahead_grown_asks_nothing_past_the_end() -> None:
    """Pages that wait on a network grow the look-ahead past what `max_items` still needs:
    the walk asks up to the last item needed, the last page smaller, and not one more."""
    calls: list[tuple[int, int]] = []

    async def waits(page: int, limit: int) -> list[Item]:
        calls.append((page, limit))
        await asyncio.sleep(0.005)
        return [Item(i) for i in range((page - 1) * limit, min(page * limit, 300))]

    ids = await walked_ids(waits, page_size=10, max_items=95)
    assert ids == list(range(95))
    assert calls == [(page, 10) for page in range(1, 10)] + [(19, 5)]


async def test_the_look_ahead_shrinks_back_when_pages_stop_waiting() -> None:
    """Grown while pages waited on a network, the look-ahead halves back to one page once
    the walk spends more of its time computing than waiting (sums over the walk)."""
    async def fetch(page: int, limit: int) -> list[Item]:
        if page <= 8:
            await asyncio.sleep(0.004)  # a network's wait
        else:
            compute(0.006)  # then computing only
        return [Item(i) for i in range((page - 1) * limit, min(page * limit, 600))]

    walk = LookAhead(fetch)
    await walk.walk(page_size=10)
    assert max(walk.ahead[:12]) == 8, walk.ahead  # grown to the default prefetch
    assert walk.ahead[-10:] == [1] * 10, walk.ahead  # and back to one page at a time
