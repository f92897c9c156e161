"""`AsyncPaginator` over an in-memory page source: properties of its requests, order,
de-duplication and look-ahead. The source is a fake server: a plain async function with the
reference's page/limit semantics (docs/oxlin-api §7) over a list."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oxlin_async as ox
from oxlin_async import AsyncPaginator

MAX_LIMIT = 500

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# =============================================================== the in-memory page source
@attrs.frozen
class Item:
    id: int


class Boom(Exception):
    """What a failing page raises."""


class PageSource:
    """A fake server over a list: 1-based `page`, `limit` at most 500, bare pages.

    `delays[i]` is how many loop turns the i-th request takes (so answers come back out of
    order); `fail` maps page numbers to the exception they raise; `insert_front` new items
    are put at the front of the list after each of the first `insert_calls` answers.
    """

    def __init__(self, items: Sequence[Item], *, delays: Sequence[int] = (0,),
                 fail: dict[int, BaseException] | None = None, insert_front: int = 0,
                 insert_calls: int = 0) -> None:
        self.items = list(items)
        self.delays = list(delays) or [0]
        self.fail = fail or {}
        self.insert_front = insert_front
        self.insert_calls = insert_calls
        self.calls: list[tuple[int, int]] = []
        self._next_id = -1

    async def __call__(self, page: int, limit: int) -> list[Item]:
        assert isinstance(page, int) and page >= 1, page
        assert isinstance(limit, int) and 1 <= limit <= MAX_LIMIT, limit
        n = len(self.calls)
        self.calls.append((page, limit))
        for _ in range(self.delays[n % len(self.delays)]):
            await asyncio.sleep(0)
        if page in self.fail:
            raise self.fail[page]
        start = (page - 1) * limit
        answer = self.items[start:start + limit]
        if n < self.insert_calls:
            fresh = [Item(self._next_id - i) for i in range(self.insert_front)]
            self._next_id -= self.insert_front
            self.items[:0] = fresh
        return answer


def items_of(n: int) -> list[Item]:
    return [Item(i) for i in range(n)]


def ranges(calls: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """(first index, limit) of each request."""
    return [((page - 1) * limit, limit) for page, limit in calls]


@contextlib.asynccontextmanager
async def no_new_tasks() -> AsyncIterator[None]:
    """Fail if the block leaves a task of its own unfinished."""
    before = asyncio.all_tasks()
    yield
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert not left, f"tasks left pending: {left}"


async def walk(paginator: AsyncPaginator[Item]) -> list[Item]:
    return [item async for item in paginator]


# ------------------------------------------------------------------------------ properties
@st.composite
def walks(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 2000))
    page_size = draw(st.one_of(st.integers(1, 12), st.integers(1, MAX_LIMIT)))
    pages = n // page_size + 1
    start_page = draw(st.one_of(st.just(1), st.integers(1, pages + 2)))
    max_items = draw(st.one_of(st.none(), st.integers(0, n), st.integers(0, 3 * page_size)))
    prefetch = draw(st.integers(1, 8))
    delays = draw(st.lists(st.integers(0, 3), min_size=1, max_size=6))
    return {"n": n, "page_size": page_size, "start_page": start_page, "max_items": max_items,
            "prefetch": prefetch, "delays": delays}


def check_requests(calls: list[tuple[int, int]], *, n: int, page_size: int, start_page: int,
                   max_items: int | None, prefetch: int) -> None:
    offset = (start_page - 1) * page_size
    spans = ranges(calls)
    assert all(limit <= min(page_size, MAX_LIMIT) for _, limit in spans)
    if max_items == 0:
        assert calls == []
        return
    # The requests tile the list from the start offset: no gap, no overlap, no re-request.
    assert spans, "at least one request"
    assert spans[0][0] == offset
    for (start, limit), (next_start, _) in itertools.pairwise(spans):
        assert next_start == start + limit
    # Only the request that reaches `max_items` may be smaller than a page.
    assert all(limit == page_size for _, limit in spans[:-1])
    available = max(0, n - offset)
    needed = available // page_size + 1  # up to and including the first short page
    if max_items is None:
        assert needed <= len(calls) <= needed + prefetch - 1
        return
    end = offset + max_items
    assert all(start < end for start, _ in spans), "a request past max_items"
    assert len(calls) <= math.ceil(max_items / page_size)
    if available >= max_items:
        last_start, last_limit = spans[-1]
        wanted = end - last_start
        assert last_limit >= wanted
        # No smaller page on the grid of that request would have held the rest.
        smaller = [s for s in range(wanted, last_limit) if last_start % s == 0]
        assert not smaller, (last_start, wanted, last_limit, smaller)
    else:
        assert needed <= len(calls) <= needed + prefetch - 1


@PROPERTY
@given(walks())
async def test_walk_yields_the_expected_slice(case: dict[str, Any]) -> None:
    n, page_size, start_page = case["n"], case["page_size"], case["start_page"]
    max_items, prefetch = case["max_items"], case["prefetch"]
    items = items_of(n)
    offset = (start_page - 1) * page_size
    expected = items[offset:] if max_items is None else items[offset:offset + max_items]

    source = PageSource(items, delays=case["delays"])
    paginator = AsyncPaginator(source, page_size=page_size, max_items=max_items,
                               start_page=start_page, prefetch=prefetch)
    async with no_new_tasks():
        got = await walk(paginator)
    assert got == expected
    assert len({i.id for i in got}) == len(got)
    check_requests(source.calls, n=n, page_size=page_size, start_page=start_page,
                   max_items=max_items, prefetch=prefetch)

    # pages(): non-empty pages, at most page_size each, that concatenate to the walk.
    source = PageSource(items, delays=case["delays"][::-1])
    paginator = AsyncPaginator(source, page_size=page_size, max_items=max_items,
                               start_page=start_page, prefetch=prefetch)
    async with no_new_tasks():
        pages = [page async for page in paginator.pages()]
    assert all(0 < len(page) <= page_size for page in pages)
    assert [i for page in pages for i in page] == expected

    async with no_new_tasks():
        assert await paginator.collect() == expected


@settings(PROPERTY, max_examples=20)  # each example ends with a full gc.collect()
@given(walks(), st.data())
async def test_an_error_propagates_after_the_earlier_pages(case: dict[str, Any],
                                                            data: st.DataObject) -> None:
    n, page_size, start_page = case["n"], case["page_size"], case["start_page"]
    prefetch = case["prefetch"]
    items = items_of(n)
    offset = (start_page - 1) * page_size
    first_page = start_page
    last_page = start_page + max(0, n - offset) // page_size  # the first short page
    bad = data.draw(st.integers(first_page, last_page), label="failing page")
    # Later pages may fail too (differently): only page `bad`'s error may surface.
    later = data.draw(st.sets(st.integers(bad + 1, last_page + prefetch)), label="later")
    fail: dict[int, BaseException] = {p: RuntimeError(f"later page {p}") for p in later}
    fail[bad] = Boom(bad)

    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    try:
        source = PageSource(items, delays=case["delays"], fail=fail)
        paginator = AsyncPaginator(source, page_size=page_size, start_page=start_page,
                                   prefetch=prefetch)
        got: list[Item] = []
        async with no_new_tasks():
            with pytest.raises(Boom) as raised:
                async for item in paginator:
                    got.append(item)
        assert raised.value.args == (bad,)
        assert got == items[offset:(bad - 1) * page_size]

        source = PageSource(items, delays=case["delays"], fail=fail)
        paginator = AsyncPaginator(source, page_size=page_size, start_page=start_page,
                                   prefetch=prefetch)
        async with no_new_tasks():
            with pytest.raises(Boom):
                await paginator.collect()
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous_handler)
    assert not unretrieved, unretrieved


@settings(PROPERTY, max_examples=60)
@given(n=st.integers(0, 600), page_size=st.integers(2, 60), prefetch=st.integers(1, 8),
       data=st.data())
async def test_items_shifting_forward_come_out_once(n: int, page_size: int, prefetch: int,
                                                    data: st.DataObject) -> None:
    # Inserts at the front between requests push items onto later pages (duplicates).
    # At most half a page per request: a list growing faster can leave a walk with pages
    # in flight so far behind that catching up takes more pages of duplicates than the
    # rule against servers that ignore `page` allows (PaginationError, by design).
    insert = data.draw(st.integers(1, max(1, page_size // 2)), label="inserted per request")
    insert_calls = data.draw(st.integers(0, 40), label="requests that insert")
    max_items = data.draw(st.one_of(st.none(), st.integers(0, n)), label="max_items")
    items = items_of(n)

    # Requests answered in the order they are sent: every original item shows up.
    source = PageSource(items, insert_front=insert, insert_calls=insert_calls)
    paginator = AsyncPaginator(source, page_size=page_size, prefetch=prefetch,
                               max_items=max_items)
    async with no_new_tasks():
        got = await walk(paginator)
    ids = [i.id for i in got]
    assert len(set(ids)) == len(ids), "a duplicate id"
    originals = [i for i in ids if i >= 0]
    assert originals == sorted(originals), "originals out of order"
    if max_items is None:
        assert set(originals) == set(range(n)), "an original item was missed"
    else:
        assert len(got) == max_items  # duplicates don't count against the cap
        assert originals == list(range(len(originals)))

    # Answers in any order: possibly an item missed, never one twice.
    delays = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=5), label="delays")
    source = PageSource(items, insert_front=insert, insert_calls=insert_calls, delays=delays)
    paginator = AsyncPaginator(source, page_size=page_size, prefetch=prefetch)
    async with no_new_tasks():
        got = await walk(paginator)
    assert len({i.id for i in got}) == len(got)


@pytest.mark.parametrize(("n", "page_size", "insert", "max_items", "small"),
                         [(40, 3, 1, 20, 1), (228, 35, 13, 205, 2), (114, 18, 9, 84, 2)])
async def test_small_last_pages_of_a_list_growing_at_the_front_still_end_exactly(
        n: int, page_size: int, insert: int, max_items: int, small: int) -> None:
    """The last pages before `max_items` are asked smaller; while `insert` items are added
    at the front per request, a page of `insert` items or fewer reads only duplicates, page
    after page (once taken for a server ignoring `page`: seen in CI under load). Such a
    page sends the walk back to full pages on the page grid."""
    source = PageSource(items_of(n), insert_front=insert, insert_calls=40)
    got = await walk(AsyncPaginator(source, page_size=page_size, prefetch=1,
                                    max_items=max_items))
    assert [i.id for i in got] == list(range(max_items))
    limits = [limit for _, limit in source.calls]
    shrunk = [i for i, limit in enumerate(limits) if limit < page_size]
    assert shrunk, "the walk did ask smaller pages at its end"
    back = limits.index(page_size, shrunk[0])  # then full pages again, and only them
    # small pages until one brings nothing new (one that does brings the walk forward)
    assert set(limits[back:]) == {page_size} and back - shrunk[0] == small


async def test_a_full_page_of_duplicates_keeps_the_small_last_page() -> None:
    """Only a small page all duplicates sends the walk back to full pages: a full one (a
    page's worth added at the front once) leaves the last page as small as it can be."""
    source = PageSource(items_of(100), insert_front=10, insert_calls=1)
    got = await walk(AsyncPaginator(source, page_size=10, prefetch=1, max_items=35))
    assert [i.id for i in got] == list(range(35))
    assert [limit for _, limit in source.calls] == [10, 10, 10, 10, 5]


async def test_look_ahead_starts_at_one_page_and_doubles_up_to_prefetch() -> None:
    in_flight, peak = 0, []

    async def fetch(page: int, limit: int) -> list[Item]:
        nonlocal in_flight
        in_flight += 1
        peak.append(in_flight)
        try:
            # a network's wait: the look-ahead grows only while the walk waits on one
            await asyncio.sleep(0.005)
            return [Item(i) for i in range((page - 1) * limit, min(page * limit, 1000))]
        finally:
            in_flight -= 1

    paginator = AsyncPaginator(fetch, page_size=10, prefetch=5)
    async with no_new_tasks():
        pages = [page async for page in paginator.pages()]
    assert len(pages) == 100
    assert peak[0] == 1  # a one-page list costs one request
    assert max(peak) == 5

    # A short list: one request, nothing wasted.
    calls: list[tuple[int, int]] = []

    async def short(page: int, limit: int) -> list[Item]:
        calls.append((page, limit))
        return items_of(3)[(page - 1) * limit:page * limit]

    assert await AsyncPaginator(short, page_size=10, prefetch=8).collect() == items_of(3)
    assert calls == [(1, 10)]


async def test_first_asks_for_one_item() -> None:
    source = PageSource(items_of(50))
    assert await AsyncPaginator(source, page_size=20).first() == Item(0)
    assert source.calls == [(1, 1)]

    source = PageSource(items_of(50))
    assert await AsyncPaginator(source, page_size=20, start_page=2).first() == Item(20)
    assert ranges(source.calls) == [(20, 1)]

    source = PageSource([])
    assert await AsyncPaginator(source).first() is None
    assert source.calls == [(1, 1)]

    # The first item of an empty walk: none, and nothing asked.
    source = PageSource(items_of(50))
    assert await AsyncPaginator(source, max_items=0).first() is None
    assert source.calls == []


async def test_breaking_out_cancels_the_look_ahead() -> None:
    started: list[int] = []
    cancelled: list[int] = []
    release = asyncio.Event()

    async def fetch(page: int, limit: int) -> list[Item]:
        started.append(page)
        await asyncio.sleep(0.01)  # waiting on a network: the look-ahead grows
        if page > 2:
            try:
                await release.wait()  # never set: only cancellation ends these
            except asyncio.CancelledError:
                cancelled.append(page)
                raise
        return [Item(i) for i in range((page - 1) * limit, page * limit)]

    paginator = AsyncPaginator(fetch, page_size=5, prefetch=4)
    async with no_new_tasks(), contextlib.aclosing(paginator.__aiter__()) as it:
        async for item in it:
            if item.id == 5:  # the first item of page 2: page 3 is in flight
                break
    assert started == [1, 2, 3]
    assert cancelled == [3]


@pytest.mark.parametrize("kwargs", [
    {"page_size": 0}, {"page_size": 501}, {"page_size": True}, {"page_size": 1.5},
    {"max_items": -1}, {"max_items": 2.0}, {"max_items": True}, {"start_page": 0},
    {"start_page": True}, {"prefetch": 0}, {"prefetch": True},
])
def test_bad_page_options(kwargs: dict[str, Any]) -> None:
    async def fetch(page: int, limit: int) -> list[Item]:
        raise AssertionError("no request expected")

    with pytest.raises(ox.ArgumentError) as raised:
        AsyncPaginator(fetch, **kwargs)
    assert raised.value.argument == next(iter(kwargs))
