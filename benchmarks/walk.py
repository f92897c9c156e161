"""walk: items per second walking one account of 200,000 transactions, page size 500.

The server is a tiny aiohttp.web app in another process serving pre-rendered pages
(rendered once, as the emulator renders transactions, every item drawn on its own:
distinct ids, its own import and update instants...), so it is not the bottleneck and
its CPU is not the client's. It implements ``GET {api}/transactions?page=&limit=`` (page
n holds items (n-1)*limit .. n*limit-1; ``[]`` past the end) and ``POST {auth}/token``
(a static token). Latency is chosen by the URL: ``/lat/{ms}/...`` waits `ms` ms
(``asyncio.sleep`` in the server) before answering, so one server serves every case.

Clients, each walking the whole account in the same process and run, in turns:
(a) raw aiohttp + orjson, page after page, yielding dicts: the floor of any aiohttp client;
(b) oxlin-async: ``async for tx in user.transactions.list(account_id=..., page_size=500)``
    (default prefetch), typed ``Transaction`` objects; with the ``speed`` extra (msgspec,
    orjson) and, no latency only, without it (stdlib json, switched off in-process);
(c) naive: sequential aiohttp, stdlib ``json.loads(body, parse_float=Decimal)`` and one
    dataclass per item built field by field, as the public connectors do.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import gc
import json
import multiprocessing.connection
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import aiohttp
import orjson

from . import (
    ACCOUNT_ID,
    Child,
    Options,
    child_cpu_seconds,
    maybe_profile,
    median,
    print_table,
    print_targets,
    render_page,
    render_repeated_page,
    sched_seconds,
    section,
    serve_commands,
    target,
)

NAME = "walk"
PAGE = 500
TOKEN = {"access_token": "at_benchmark", "token_type": "Bearer", "expires_in": 3600,
         "scope": "openid profile accounts_read transactions_read",
         "refresh_token": "rt_benchmark"}


# ---------------------------------------------------------------------- the server


def _serve(conn: multiprocessing.connection.Connection, total: int, page_size: int,
           repeated: bool = False) -> None:
    """Child process: render every page once, then serve them until told to stop."""
    asyncio.run(_serve_async(conn, total, page_size, repeated))


async def _serve_async(conn: multiprocessing.connection.Connection, total: int,
                       page_size: int, repeated: bool) -> None:
    from aiohttp import web

    render = render_repeated_page if repeated else render_page
    pages = [render(start, page_size, total=total)
             for start in range(0, total, page_size)]
    rendered_bytes = sum(map(len, pages))
    counts = {"requests": 0, "token": 0}
    token_body = orjson.dumps(TOKEN)
    account = str(ACCOUNT_ID)

    async def delay(request: web.Request) -> None:
        ms = int(request.match_info["ms"])
        if ms:
            await asyncio.sleep(ms / 1000)

    async def transactions(request: web.Request) -> web.Response:
        await delay(request)
        counts["requests"] += 1
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"error": "invalid_token", "error_description": "no"},
                                     status=401)
        q = request.query
        try:
            page, limit = int(q.get("page", "1")), int(q.get("limit", "100"))
        except ValueError:
            page = limit = 0
        if page < 1 or not 1 <= limit <= 500:
            return web.json_response({"error": "BAD_PARAMETER",
                                      "error_description": "bad page or limit"}, status=400)
        if q.get("account_id", account) != account:
            body = b"[]"
        elif limit == page_size:
            body = pages[page - 1] if page <= len(pages) else b"[]"
        else:  # another page grid: rendered now (the same items, deterministically)
            body = render((page - 1) * limit, limit, total=total)
        return web.Response(body=body, content_type="application/json")

    async def token(request: web.Request) -> web.Response:
        await delay(request)
        counts["token"] += 1
        await request.read()
        return web.Response(body=token_body, content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.add_routes([web.get("/lat/{ms}/api/v2.1/transactions", transactions),
                    web.post("/lat/{ms}/auth/token", token)])
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    conn.send(("ready", {"base": f"http://127.0.0.1:{port}", "pages": len(pages),
                         "bytes": rendered_bytes}))

    def stats(_: Any) -> dict[str, Any]:
        return {**counts, "cpu": child_cpu_seconds()}

    def reset(_: Any) -> None:
        counts["requests"] = counts["token"] = 0

    try:
        await serve_commands(conn, {"stats": stats, "reset": reset})
    finally:
        await runner.cleanup()


class WalkServer(Child):
    """The page server in another process; `environment(ms)` points a client at it."""

    def __init__(self, total: int, page_size: int = PAGE, *, repeated: bool = False) -> None:
        """`repeated`: the old benchmark data (`render_repeated_page`), for "(info)" rows."""
        super().__init__(_serve, total, page_size, repeated)
        self.base: str = self.info["base"]
        self.total = total

    def urls(self, ms: int) -> dict[str, str]:
        root = f"{self.base}/lat/{ms}"
        return {"auth_url": f"{root}/auth", "api_url": f"{root}/api/v2.1",
                "embed_url": f"{root}/embed/v2.1"}

    def environment(self, ms: int) -> Any:
        import oxlin_async as ox

        return ox.Environment(**self.urls(ms))


# ---------------------------------------------------------------------- the clients


async def raw_walk(api_url: str, page_size: int = PAGE,
                   max_pages: int | None = None) -> AsyncIterator[dict[str, Any]]:
    """(a) raw aiohttp + orjson, sequential; yields dicts."""
    headers = {"Authorization": "Bearer at_benchmark", "Accept": "application/json"}
    url = f"{api_url}/transactions"
    async with aiohttp.ClientSession(headers=headers) as http:
        page = 1
        while True:
            params = {"account_id": str(ACCOUNT_ID), "page": str(page),
                      "limit": str(page_size)}
            async with http.get(url, params=params) as response:
                response.raise_for_status()
                body = await response.read()
            items = orjson.loads(body)
            for item in items:
                yield item
            if len(items) < page_size or (max_pages is not None and page >= max_pages):
                return
            page += 1


class NaiveType(str, enum.Enum):
    CREDIT = "CREDIT"
    DEBIT = "DEBIT"
    OTHER = "OTHER"


@dataclasses.dataclass
class NaiveTransaction:
    """What a typical connector builds: a dataclass, converted field by field."""

    id: str
    account_id: str
    amount: Decimal
    currency: str
    label: str
    type: str
    origin: str
    status: str
    category_id: str
    date: dt.datetime
    import_date: dt.datetime
    value_date: dt.datetime | None = None
    booking_date: dt.datetime | None = None
    last_update_date: dt.datetime | None = None
    notes: str | None = None
    remittance_information: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NaiveTransaction:
        def when(value: Any) -> dt.datetime | None:
            return None if value is None else dt.datetime.fromtimestamp(value, dt.timezone.utc)

        def kind(value: str) -> str:
            try:
                return NaiveType(value)
            except ValueError:
                return value

        return cls(
            id=str(d["id"]), account_id=str(d["account_id"]), amount=Decimal(d["amount"]),
            currency=d["currency"], label=d["label"], type=kind(d["type"]),
            origin=d["origin"], status=d["status"], category_id=d["category_id"],
            date=when(d["date"]), import_date=when(d["import_date"]),  # type: ignore[arg-type]
            value_date=when(d.get("value_date")), booking_date=when(d.get("booking_date")),
            last_update_date=when(d.get("last_update_date")), notes=d.get("notes"),
            remittance_information=list(d.get("remittance_information") or []))


async def naive_walk(api_url: str, page_size: int = PAGE,
                     max_pages: int | None = None) -> AsyncIterator[NaiveTransaction]:
    """(c) sequential aiohttp, stdlib json with Decimal floats, a dataclass per item."""
    headers = {"Authorization": "Bearer at_benchmark", "Accept": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as http:
        page = 1
        while True:
            params = {"account_id": str(ACCOUNT_ID), "page": str(page),
                      "limit": str(page_size)}
            async with http.get(f"{api_url}/transactions", params=params) as response:
                response.raise_for_status()
                text = await response.text()
            items = json.loads(text, parse_float=Decimal)
            for item in items:
                yield NaiveTransaction.from_dict(item)
            if len(items) < page_size or (max_pages is not None and page >= max_pages):
                return
            page += 1


async def ours_walk(urls: dict[str, str], page_size: int = PAGE,
                    max_items: int | None = None,
                    prefetch: int | None = None) -> AsyncIterator[Any]:
    """(b) oxlin-async's typed iterator, default prefetch (unless told)."""
    import oxlin_async as ox

    async with ox.OxlinClient("benchmark", "secret",
                              environment=ox.Environment(**urls)) as client:
        user = client.as_user_token("at_benchmark")
        walk = (user.transactions.list(account_id=str(ACCOUNT_ID), page_size=page_size,
                                       max_items=max_items) if prefetch is None
                else user.transactions.list(account_id=str(ACCOUNT_ID), page_size=page_size,
                                            max_items=max_items, prefetch=prefetch))
        async for tx in walk:
            yield tx


async def count(items: AsyncIterator[Any]) -> int:
    n = 0
    async for _ in items:
        n += 1
    return n


async def ours_count(urls: dict[str, str], prefetch: int | None = None) -> int:
    """(b) as an application writes it: ``async for`` straight over the SDK's iterator
    (no wrapper generator of ours in between, as none is around the raw loop's)."""
    import oxlin_async as ox

    n = 0
    async with ox.OxlinClient("benchmark", "secret",
                              environment=ox.Environment(**urls)) as client:
        user = client.as_user_token("at_benchmark")
        options = {} if prefetch is None else {"prefetch": prefetch}
        async for _ in user.transactions.list(account_id=str(ACCOUNT_ID), page_size=PAGE,
                                              **options):
            n += 1
    return n


@contextlib.contextmanager
def without_speed() -> Iterator[None]:
    """The SDK as installed without the ``speed`` extra (no msgspec, no orjson: the
    standard library's json and the generated Python code), switched in this process
    through private module attributes; restored on leaving."""
    from oxlin_async import _convert, _wire

    saved = (_wire.msgspec, dict(_wire._DECODERS), dict(_wire._ROW_DECODERS),
             _convert.orjson)
    _wire.msgspec = None  # type: ignore[assignment]
    _wire._DECODERS.clear()
    _wire._ROW_DECODERS.clear()
    _convert.orjson = None  # type: ignore[assignment]
    try:
        yield
    finally:
        _wire.msgspec, decoders, rows, _convert.orjson = saved
        _wire._DECODERS.clear()
        _wire._DECODERS.update(decoders)
        _wire._ROW_DECODERS.clear()
        _wire._ROW_DECODERS.update(rows)


async def ours_count_without_speed(urls: dict[str, str]) -> int:
    with without_speed():
        return await ours_count(urls)


async def timed(make: Callable[[], Awaitable[int]], expected: int) -> dict[str, float]:
    gc.collect()
    wait0 = sched_seconds()[1]
    cpu0, t0 = time.process_time(), time.perf_counter()
    n = await make()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    wait = sched_seconds()[1] - wait0
    if n != expected:
        raise RuntimeError(f"walked {n} items, expected {expected}")
    return {"seconds": elapsed, "items_per_s": n / elapsed, "client_cpu_s": cpu,
            "client_cpu_wait_s": wait}


# ---------------------------------------------------------------------- the benchmark

CLIENTS = {
    "a_raw": "(a) raw aiohttp + orjson dicts",
    "b_ours": "(b) oxlin-async typed iterator (speed extra)",
    "b_ours_nospeed": "(b) oxlin-async without the speed extra",
    "c_naive": "(c) naive: stdlib json + dataclass",
    "b_ours_prefetch1": "(diagnostic) (b) with prefetch=1 (sequential)",
}


def _makers(server: WalkServer, ms: int) -> dict[str, Callable[[], Awaitable[int]]]:
    urls = server.urls(ms)
    return {"a_raw": lambda: count(raw_walk(urls["api_url"])),
            "b_ours": lambda: ours_count(urls),
            "c_naive": lambda: count(naive_walk(urls["api_url"]))}


async def _case(server: WalkServer, ms: int, repeats: int, opts: Options,
                out: dict[str, Any], *, nospeed: bool = False,
                naive: bool = True) -> dict[str, Any]:
    urls = server.urls(ms)
    # warm-up: a few pages each (imports, converter compilation, connections)
    await count(raw_walk(urls["api_url"], max_pages=3))
    await count(naive_walk(urls["api_url"], max_pages=3))
    await count(ours_walk(urls, max_items=3 * PAGE))
    makers = _makers(server, ms)
    if not naive:
        del makers["c_naive"]
    if nospeed:
        makers["b_ours_nospeed"] = lambda: ours_count_without_speed(urls)
    if ms:  # diagnostic, no target: the same iterator with a deeper look-ahead
        makers["b_ours_prefetch1"] = lambda: ours_count(urls, prefetch=1)
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in makers}
    server_cpu: list[float] = []
    requests: dict[str, int] = {}
    for r in range(repeats):
        # the clients take turns, so machine noise hits them alike
        order = list(makers) if r % 2 == 0 else list(reversed(list(makers)))
        for name in order:
            server.call("reset")
            before = server.call("stats")
            runs[name].append(await timed(makers[name], server.total))
            after = server.call("stats")
            server_cpu.append(after["cpu"] - before["cpu"])
            requests[name] = after["requests"]
    if opts.profile:
        with maybe_profile(True, f"walk {ms} ms: (b) oxlin-async", out):
            await makers["b_ours"]()
    med = {k: median([x["items_per_s"] for x in v]) for k, v in runs.items()}
    return {
        "latency_ms": ms,
        "runs": runs,
        "median_items_per_s": med,
        "median_seconds": {k: median([x["seconds"] for x in v]) for k, v in runs.items()},
        "median_client_cpu_s": {k: median([x["client_cpu_s"] for x in v])
                                for k, v in runs.items()},
        "median_client_cpu_wait_s": {k: median([x["client_cpu_wait_s"] for x in v])
                                     for k, v in runs.items()},
        "requests_per_walk": requests,
        "server_cpu_s_per_walk_max": max(server_cpu),
    }


def _print_case(case: dict[str, Any]) -> None:
    ms = case["latency_ms"]
    print(f"\n  latency {ms} ms per request; median of {len(case['runs']['a_raw'])} runs")
    rows = []
    for key, label in CLIENTS.items():
        if key not in case["runs"]:
            continue
        rows.append([label, round(case["median_items_per_s"][key]),
                     case["median_seconds"][key], case["median_client_cpu_s"][key],
                     case["median_client_cpu_wait_s"][key], case["requests_per_walk"][key]])
    print_table(["client", "items/s", "wall s", "client CPU s", "waiting for a CPU s",
                 "requests"], rows)
    print(f"  server CPU per walk (max over all walks): "
          f"{case['server_cpu_s_per_walk_max']:.2f} s (another process)")


def paired(case: dict[str, Any], x: str, y: str) -> float:
    """The median over the repeats of x's items/s over y's in the same repeat: the two
    ran back to back, so machine noise cancels more than in a ratio of medians."""
    return median([a["items_per_s"] / b["items_per_s"]
                   for a, b in zip(case["runs"][x], case["runs"][y], strict=True)])


async def run_async(opts: Options) -> dict[str, Any]:
    total = opts.pick(200_000, 50_000)
    repeats = opts.repeats
    out: dict[str, Any] = {"items": total, "page_size": PAGE, "repeats": repeats}
    t0 = time.perf_counter()
    with WalkServer(total) as server:
        out["server_render_s"] = time.perf_counter() - t0
        out["server_pages"] = server.info["pages"]
        out["server_bytes"] = server.info["bytes"]
        print(f"  {total:,} transactions in {server.info['pages']} pages of {PAGE} "
              f"({server.info['bytes'] / 2**20:.0f} MiB, {server.info['bytes'] / total:.0f}"
              f" bytes per transaction), served by another process (rendered in "
              f"{out['server_render_s']:.1f} s)", flush=True)
        cpu = await _case(server, 0, repeats, opts, out, nospeed=True)
        _print_case(cpu)
        lat = await _case(server, 20, repeats, opts, out)
        _print_case(lat)
    # (info) the previous benchmark data: timestamps shared by the day, caches hit
    info_total = opts.pick(100_000, 25_000)
    with WalkServer(info_total, repeated=True) as server:
        old = await _case(server, 0, repeats, opts, out, nospeed=True, naive=False)
    out["cases"] = {"0ms": cpu, "20ms": lat, "0ms_repeated_data": old}
    c = cpu["median_items_per_s"]
    out["targets"] = [
        target("no latency: (b) ours / (a) raw aiohttp+orjson (speed extra)",
               paired(cpu, "b_ours", "a_raw"), ">=", 0.75, unit="x",
               note=f"medians {c['b_ours']:,.0f} vs {c['a_raw']:,.0f} items/s"),
        target("no latency: (b) ours without the speed extra / (a) raw aiohttp+orjson",
               paired(cpu, "b_ours_nospeed", "a_raw"), ">=", 0.5, unit="x",
               note=f"medians {c['b_ours_nospeed']:,.0f} vs {c['a_raw']:,.0f} items/s"),
        target("20 ms: (b) ours / (c) naive", paired(lat, "b_ours", "c_naive"), ">=", 3.0,
               unit="x"),
        target("20 ms: (b) ours / (a) raw aiohttp+orjson", paired(lat, "b_ours", "a_raw"),
               ">=", 3.0, unit="x"),
    ]
    print()
    print_targets(out["targets"])
    print(f"  (info) no latency: (b) ours / (c) naive = {paired(cpu, 'b_ours', 'c_naive'):.2f}x")
    print(f"  (info) no latency, the previous (repeated) benchmark data, {info_total:,} items:"
          f" (b) ours / (a) raw = {paired(old, 'b_ours', 'a_raw'):.2f}x, without the speed"
          f" extra {paired(old, 'b_ours_nospeed', 'a_raw'):.2f}x")
    return out


def run(opts: Options) -> dict[str, Any]:
    section("walk: items/s over one account (page size 500), server in another process")
    return asyncio.run(run_async(opts))
