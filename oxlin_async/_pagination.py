"""`AsyncPaginator`: walks a page/limit list with a bounded, in-order look-ahead.

The reference's lists are bare arrays with 1-based `page` and `limit` (at most 500); the
only end signal is a page shorter than `limit`. Since page numbers are known in advance,
the paginator requests the next pages while the caller consumes the current one: the
look-ahead starts at one page and doubles with each full page up to `prefetch` (so a
short list costs no wasted request) while the walk waits on the network (the thread idled
at least 4 times as long as it computed while its pages came), and halves back when it does
not (a server that answers at once: more pages in flight would only cost CPU); pages are
yielded strictly in order, and the first short page cancels the requests beyond it.
Items are de-duplicated by id within a walk, so items that shift between pages while
data changes come out once.

A server that ignores ``page`` must not make a walk endless: full pages that bring no
new item, or repeat the previous page item for item, stop the walk with
`PaginationError`; so does reaching ``max_pages`` (an optional safeguard, None by default)
while pages are still full. Items inserted at the front while pages are in flight can
make a page or two all duplicates legitimately, so the walk stops only after such pages
in a row worth ``prefetch + 2`` full pages of items: far fewer than a de-duplication
window, so a repeating server never gets to yield an item twice. The last pages before
``max_items`` are asked smaller; one of them all duplicates (items added at the front at
least as fast as it reads) sends the walk back to full pages. A list growing by more
than half a page per request can still leave a walk with pages in flight too far behind
to catch up within that bound: `PaginationError` then, never an item twice.

What concurrency costs when the list changes during a walk: a sequential walk
(``prefetch=1``) over a list that only grows sees shifted items twice (and yields them
once) but never misses one; with look-ahead, a later page may be served before an
earlier one, so an item pushed across their boundary in between can be missed. Walk
changing data with ``prefetch=1``, or read it incrementally (``start_import_date``).
(In the transactions' default order, import date ascending, a new import lands at the
end and shifts nothing.)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine, Hashable
from operator import attrgetter
from typing import Any, Generic, TypeVar

from .errors import ArgumentError, PaginationError

T = TypeVar("T")

MAX_PAGE_SIZE = 500

#: Fetch one page: (page number, limit) -> the page's decoded items.
FetchPage = Callable[[int, int], Coroutine[Any, Any, list[T]]]


#: An item's id (the de-duplication key): attrgetter runs in C.
_item_id: Callable[[Any], Hashable] = attrgetter("id")

#: The look-ahead grows only while the walk mostly waits on the network: while waiting
#: for its pages so far, the thread idled at least this many times as long as it computed.
_IDLE_OVER_BUSY = 4


def _aligned_limit(offset: int, wanted: int, limit: int) -> int:
    """The smallest page size >= `wanted` whose pages start at `offset`."""
    if offset == 0:
        return wanted
    for size in range(wanted, limit):
        if offset % size == 0:
            return size
    return limit


def check_page_options(page_size: int, max_items: int | None, start_page: int,
                       prefetch: int, max_pages: int | None = None) -> None:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or \
            not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ArgumentError("page_size", f"must be an int from 1 to {MAX_PAGE_SIZE}, "
                                         f"got {page_size!r}")
    # bool is an int subclass: True would silently mean 1
    if max_items is not None and (isinstance(max_items, bool) or
                                  not isinstance(max_items, int) or max_items < 0):
        raise ArgumentError("max_items", f"must be None or an int >= 0, got {max_items!r}")
    if isinstance(start_page, bool) or not isinstance(start_page, int) or start_page < 1:
        raise ArgumentError("start_page", f"must be an int >= 1, got {start_page!r}")
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
        raise ArgumentError("prefetch", f"must be an int >= 1, got {prefetch!r}")
    if max_pages is not None and (isinstance(max_pages, bool) or
                                  not isinstance(max_pages, int) or max_pages < 1):
        raise ArgumentError("max_pages", f"must be None or an int >= 1, got {max_pages!r}")


#: De-duplication looks back over at least this many items (and `prefetch + 2` pages):
#: far more than items shift while a walk runs, yet bounded however long the walk is.
_DEDUPE_ITEMS = 20_000


class _RecentIds:
    """The ids of the last `pages` pages, to drop items that shifted into a later page."""

    def __init__(self, pages: int) -> None:
        self._pages: deque[list[Hashable]] = deque()
        self._max_pages = pages
        self._seen: set[Hashable] = set()

    def fresh(self, items: list[T], key: Callable[[T], Hashable],
              ids: list[Hashable] | None = None) -> list[T]:
        """The items not seen in the window; `ids`: their keys, if already known."""
        if ids is None:
            ids = list(map(key, items))
        seen = self._seen
        if seen.isdisjoint(ids) and len(set(ids)) == len(ids):
            fresh, kept = items, ids  # the usual case: nothing moved
        else:
            fresh, kept = [], []
            for item, k in zip(items, ids, strict=True):
                if k not in seen:
                    seen.add(k)
                    fresh.append(item)
                    kept.append(k)
        seen.update(kept)
        self._pages.append(kept)
        if len(self._pages) > self._max_pages:
            seen.difference_update(self._pages.popleft())
        return fresh


class AsyncPaginator(Generic[T]):
    """What ``list()`` returns. Iterate it (``async for item in ...``), or use `pages()`,
    `collect()` or `first()`. Each use is a fresh walk from `start_page`.
    """

    def __init__(self, fetch: FetchPage[T], *, page_size: int = MAX_PAGE_SIZE,
                 max_items: int | None = None, start_page: int = 1, prefetch: int = 8,
                 key: Callable[[T], Hashable] | None = _item_id,
                 max_pages: int | None = None) -> None:
        check_page_options(page_size, max_items, start_page, prefetch, max_pages)
        self.max_pages = max_pages
        self._fetch = fetch
        self.page_size = page_size
        self.max_items = max_items
        self.start_page = start_page
        self.prefetch = prefetch
        self._key = key

    def __repr__(self) -> str:
        return (f"<AsyncPaginator page_size={self.page_size} max_items={self.max_items} "
                f"start_page={self.start_page} prefetch={self.prefetch}>")

    async def pages(self) -> AsyncGenerator[list[T], None]:
        """Yield each page's new items, in server order. Empty pages are not yielded."""
        loop = asyncio.get_running_loop()
        in_flight: deque[tuple[int, int, asyncio.Task[list[T]]]] = deque()
        offset = (self.start_page - 1) * self.page_size
        limit = self.page_size
        end = None if self.max_items is None else offset + self.max_items
        recent = _RecentIds(max(self.prefetch + 2, _DEDUPE_ITEMS // self.page_size))
        yielded, window = 0, 1
        # Over the walk so far, while waiting for pages: seconds the thread idled (the
        # network) and computed (reading and decoding bodies, other tasks).
        idle = busy = 0.0
        pages_read = stalled = 0
        previous: list[Any] | None = None
        shrink = True  # the last page may be smaller, to ask only what `max_items` needs
        if self.max_items == 0:
            return
        try:
            while True:
                while len(in_flight) < window and (end is None or offset < end):
                    if shrink and end is not None and end - offset < limit:
                        limit = _aligned_limit(offset, end - offset, limit)
                    page = offset // limit + 1
                    in_flight.append((limit, page, loop.create_task(self._fetch(page, limit))))
                    offset += limit
                if not in_flight:
                    return
                asked, number, task = in_flight.popleft()
                wall, cpu = loop.time(), time.thread_time()
                items = await task
                cpu = time.thread_time() - cpu
                busy += cpu
                idle += max(0.0, loop.time() - wall - cpu)
                full = len(items) >= asked
                pages_read += 1
                ids = list(map(self._key, items)) if self._key is not None else None
                signature: list[Any] = items if ids is None else ids
                repeated = full and signature == previous
                previous = signature
                if self._key is not None:
                    fresh = recent.fresh(items, self._key, ids)
                    repeated = repeated or (full and not fresh)
                    if end is not None:
                        end += len(items) - len(fresh)  # duplicates don't count
                    items = fresh
                stalled = stalled + asked if repeated else 0
                if repeated and asked < self.page_size and shrink:
                    # Items inserted ahead at least as fast as small tail pages read
                    # make each of them all duplicates, legitimately: back to full
                    # pages on the page grid (what they read again is de-duplicated).
                    shrink, limit = False, self.page_size
                    offset -= offset % limit
                if stalled >= (self.prefetch + 2) * self.page_size:
                    raise PaginationError(
                        f"full pages up to page {number} brought no new item or repeated "
                        "the previous one, again and again: the server seems to ignore "
                        "`page`", page=number)
                if self.max_items is not None:
                    items = items[: self.max_items - yielded]
                yielded += len(items)
                if items:
                    yield items
                if not full or (self.max_items is not None and yielded >= self.max_items):
                    return
                if self.max_pages is not None and pages_read >= self.max_pages:
                    raise PaginationError(
                        f"the list did not end within max_pages={self.max_pages} pages",
                        page=number)
                # More pages in flight pay only while the walk waits on the network;
                # when the server answers at once, they cost CPU (bodies read and
                # decoded at once) and buy nothing: then the window shrinks back.
                # Pages asked for together come together: the first one waited, the others
                # were ready; hence the sums over the walk, not this page alone.
                if idle >= _IDLE_OVER_BUSY * busy:
                    window = min(self.prefetch, window * 2)
                elif idle < busy:
                    window = max(1, window // 2)
        finally:
            # Also runs when the caller breaks out: nothing fetched on its behalf lingers.
            for _, _, pending in in_flight:
                pending.cancel()
            if in_flight:
                await asyncio.gather(*(t for _, _, t in in_flight), return_exceptions=True)

    async def __aiter__(self) -> AsyncGenerator[T, None]:
        pages = self.pages()
        try:
            async for page in pages:
                for item in page:
                    yield item
        finally:
            await pages.aclose()

    async def collect(self) -> list[T]:
        """Every item, as one list."""
        out: list[T] = []
        pages = self.pages()
        async for page in pages:
            out.extend(page)
        return out

    async def first(self) -> T | None:
        """The first item, or None; asks the server for one item only."""
        if self.max_items == 0:
            return None  # the walk is empty: no request
        # The first item of the caller's start page, on the caller's page grid: with
        # max_items=1 the walk shrinks its one request to a single item (page 1, limit 1
        # from the start of the list). One item has nothing to de-duplicate.
        one = AsyncPaginator(self._fetch, page_size=self.page_size, max_items=1,
                             start_page=self.start_page, key=None, max_pages=self.max_pages)
        items = await one.collect()
        return items[0] if items else None
