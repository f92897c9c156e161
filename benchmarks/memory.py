"""memory: peak RSS growth while streaming 1,000,000 transactions without collecting them.

The walk benchmark's page server (another process) serves one account of 1,000,000
transactions, page size 500. Each measured walk runs in a FRESH client process (spawned)
so that nothing earlier in the benchmark run (the 200,000-item walks, the decode
rounds...) has already grown the heap: in a used process, freed memory is reused and the
growth would look smaller than it is. In that process, after the imports and the
client's creation, the baseline RSS is read; then the walk runs while a thread samples
RSS (psutil) every 5 ms; the peak is the highest of the samples and of
``getrusage().ru_maxrss`` if it rose during the walk (it catches a spike between
samples; it is not used otherwise because Linux carries it over fork + exec, so a fresh
child starts with its parent's high-water mark). Growth = peak - baseline. The loop
counts items and drops them.

Also measured, with no target: the raw aiohttp + orjson loop (reference), and, as a
diagnostic, the SDK's iterator with its de-duplication by id switched off (the paginator
keeps every id of the walk in a set, which grows with the walk's length).

Bulk: the bulk benchmark's emulator (another process, 200 users x 2 accounts x 1,000
realistic transactions, 25 ms latency) and ``client.bulk_transactions(...)`` with the
defaults in a fresh client process, every batch consumed and dropped; the same peak RSS
growth, for ``models=False`` (the export's path: the target) and ``models=True``.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing.connection
import time
from collections.abc import AsyncIterator
from typing import Any

from . import (
    ACCOUNT_ID,
    Options,
    PeakRSS,
    maxrss_bytes,
    median,
    print_table,
    print_targets,
    section,
    target,
)
from .walk import WalkServer, raw_walk

NAME = "memory"
MB = 1024 * 1024


def _client(conn: multiprocessing.connection.Connection, urls: dict[str, str], kind: str,
            expected: int) -> None:
    """A fresh process: walk everything once and report memory figures."""
    try:
        result = asyncio.run(_client_async(urls, kind, expected))
        conn.send(("ready", result))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    conn.close()


async def _client_async(urls: dict[str, Any], kind: str, expected: int) -> dict[str, Any]:
    if kind.startswith("bulk"):
        return await _bulk_async(urls, kind, expected)
    import oxlin_async as ox

    client = ox.OxlinClient("benchmark", "secret", environment=ox.Environment(**urls))
    user = client.as_user_token("at_benchmark")
    items: AsyncIterator[Any]
    if kind in ("ours", "ours_no_dedupe"):
        walk = user.transactions.list(account_id=str(ACCOUNT_ID), page_size=500)
        if kind == "ours_no_dedupe":
            # Diagnostic only, through a private attribute: the paginator without its
            # per-walk set of the ids already seen (it de-duplicates items by id).
            if not hasattr(walk, "_key"):
                raise RuntimeError("AsyncPaginator has no _key any more")
            walk._key = None
        items = walk.__aiter__()
    else:
        items = raw_walk(urls["api_url"])
    gc.collect()
    n = 0
    t0 = time.perf_counter()
    with PeakRSS() as rss:
        maxrss_before = maxrss_bytes()
        async for _ in items:
            n += 1
        gc.collect()
        after = rss.rss()
    elapsed = time.perf_counter() - t0
    await client.close()
    if n != expected:
        raise RuntimeError(f"walked {n} items, expected {expected}")
    # ru_maxrss counts only if it rose during the walk: Linux carries the high-water mark
    # over fork + exec, so at the start it may hold the (larger) parent's RSS.
    maxrss_after = maxrss_bytes()
    peak = max(rss.peak, maxrss_after if maxrss_after > maxrss_before else 0)
    return {
        "kind": kind, "items": n, "seconds": elapsed,
        "baseline_rss_mb": rss.start_rss / MB,
        "peak_rss_mb": peak / MB,
        "growth_mb": (peak - rss.start_rss) / MB,
        "sampled_growth_mb": (rss.peak - rss.start_rss) / MB,
        "maxrss_before_walk_mb": maxrss_before / MB,
        "maxrss_after_walk_mb": maxrss_after / MB,
        "retained_after_mb": (after - rss.start_rss) / MB,
        "samples": rss.samples,
    }


async def _bulk_async(info: dict[str, Any], kind: str, expected: int) -> dict[str, Any]:
    """A bulk run in this fresh process: peak RSS growth while every batch is taken and
    dropped (`info`: the bulk benchmark's emulator)."""
    import oxlin_async as ox
    from oxlin_async.bulk import BulkUser

    client = ox.OxlinClient(info["client_id"], info["client_secret"],
                            environment=ox.Environment(**info["urls"]))
    users = [BulkUser.with_password(e, p) for e, p in info["users"]]
    run = client.bulk_transactions(users, models=kind == "bulk_models")
    gc.collect()
    n = 0
    t0 = time.perf_counter()
    with PeakRSS() as rss:
        maxrss_before = maxrss_bytes()
        async for batch in run:
            n += len(batch.transactions)
        gc.collect()
        after = rss.rss()
    elapsed = time.perf_counter() - t0
    await client.close()
    if n != expected:
        raise RuntimeError(f"bulk run got {n} transactions, expected {expected}")
    maxrss_after = maxrss_bytes()
    peak = max(rss.peak, maxrss_after if maxrss_after > maxrss_before else 0)
    return {"kind": kind, "items": n, "seconds": elapsed,
            "baseline_rss_mb": rss.start_rss / MB, "peak_rss_mb": peak / MB,
            "growth_mb": (peak - rss.start_rss) / MB,
            "retained_after_mb": (after - rss.start_rss) / MB, "samples": rss.samples}


def _measure(urls: dict[str, Any], kind: str, expected: int) -> dict[str, Any]:
    from . import _CTX

    parent, child = _CTX.Pipe()
    process = _CTX.Process(target=_client, args=(child, urls, kind, expected), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(600):
            raise RuntimeError("the client process did not finish within 600 s")
        status, value = parent.recv()
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()
        parent.close()
    if status != "ready":
        raise RuntimeError(f"the client process failed: {value}")
    return value  # type: ignore[no-any-return]


def run(opts: Options) -> dict[str, Any]:
    section("memory: peak RSS growth streaming 1,000,000 transactions (fresh process)")
    total = opts.pick(1_000_000, 200_000)
    repeats = min(opts.repeats, 3)  # RSS growth varies little; each 1M walk takes ~20 s
    t0 = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "raw": [], "ours_no_dedupe": []}
    with WalkServer(total) as server:
        print(f"  one account of {total:,} transactions, pages of 500, served by another "
              f"process (rendered in {time.perf_counter() - t0:.1f} s); "
              f"{repeats} runs of the SDK, one of the reference and the diagnostic, each in "
              "a fresh client process", flush=True)
        urls = server.urls(0)
        for r in range(repeats):
            for kind in runs:
                if kind == "ours" or r == 0:  # the reference and diagnostic: one run
                    runs[kind].append(_measure(urls, kind, total))
    labels = {"ours": "oxlin-async typed iterator (target)",
              "raw": "raw aiohttp + orjson dicts (reference)",
              "ours_no_dedupe": "(diagnostic) oxlin-async, id de-duplication off"}
    rows = []
    for kind, rs in runs.items():
        rows.append([labels[kind], median([r["growth_mb"] for r in rs]),
                     max(r["growth_mb"] for r in rs),
                     median([r["retained_after_mb"] for r in rs]),
                     median([r["baseline_rss_mb"] for r in rs]),
                     median([r["seconds"] for r in rs])])
    print_table(["client", "peak growth MB (median)", "worst MB", "RSS above baseline after MB",
                 "baseline RSS MB", "walk s"], rows)
    growth = median([r["growth_mb"] for r in runs["ours"]])
    out: dict[str, Any] = {"items": total, "repeats": repeats, "runs": runs,
                           "median_growth_mb": growth}
    note = "" if total == 1_000_000 else f"quick run: {total:,} items, not 1,000,000"
    bulk = _bulk(opts)
    out["bulk"] = bulk
    users = bulk["users"]
    out["targets"] = [
        target(f"peak RSS growth, {total:,} transactions streamed", growth, "<=", 64,
               unit="MB", note=note),
        target(f"bulk: peak RSS growth, {users} users (models=False)",
               bulk["growth_mb"]["bulk_rows"], "<=", 128, unit="MB",
               note=(f"peak RSS {bulk['peak_mb']['bulk_rows']:.0f} MB; models=True "
                     f"{bulk['growth_mb']['bulk_models']:.1f} MB"
                     + ("" if users == 200 else f"; quick run: {users} users, not 200"))),
    ]
    print()
    print_targets(out["targets"])
    return out


def _bulk(opts: Options) -> dict[str, Any]:
    """Peak RSS growth of a bulk run over the bulk benchmark's emulator, each in a fresh
    client process: models=False (target) and models=True."""
    from . import Child
    from .bulk import LATENCY, _serve

    n_users, accounts, per_account = opts.pick(200, 50), 2, 1000
    kwargs = {"users": n_users, "seed": 11, "accounts_per_user": accounts,
              "transactions_per_account": per_account, "latency": LATENCY,
              "token_lifetime": 3600}
    expected = n_users * accounts * per_account
    runs: dict[str, dict[str, Any]] = {}
    with Child(_serve, kwargs) as server:
        for kind in ("bulk_rows", "bulk_models"):
            runs[kind] = _measure(server.info, kind, expected)
    labels = {"bulk_rows": "bulk_transactions(models=False) (target)",
              "bulk_models": "bulk_transactions(models=True)"}
    print(f"\n  bulk: {n_users} users x {accounts} accounts x {per_account:,} realistic "
          "transactions, emulator in another process, each run in a fresh client process")
    print_table(["client", "peak growth MB", "peak RSS MB", "RSS above baseline after MB",
                 "baseline RSS MB", "run s"],
                [[labels[k], r["growth_mb"], r["peak_rss_mb"], r["retained_after_mb"],
                  r["baseline_rss_mb"], r["seconds"]] for k, r in runs.items()])
    return {"users": n_users, "runs": runs,
            "growth_mb": {k: r["growth_mb"] for k, r in runs.items()},
            "peak_mb": {k: r["peak_rss_mb"] for k, r in runs.items()}}
