"""bulk: wall time of ``client.bulk_transactions(...)`` over many users, against the ideal
schedule and against a sequential per-user, per-page client.

The emulator (``OxlinSandbox``, 25 ms added latency on every request, token requests
included) runs in ANOTHER PROCESS. Why: each emulator page request filters and sorts
the account's 1,000 records and renders 500 of them (``to_json`` + orjson), a couple of
ms of CPU; over ~1,200 page requests that is seconds of CPU which, in this process,
would share the client's one thread and be counted as the SDK's time. Its request
counters come back over a pipe; the population is built before the clock starts.

* ideal = (requests the emulator actually received, token requests included) x latency
  / concurrency: every request slot busy all the time, zero CPU;
* sequential = a raw aiohttp + orjson client (the cheapest possible), one user after
  the other, one page after the other: token, accounts, then each account's pages until
  a short page. It is timed on a subset of the users and extrapolated linearly to all
  of them (the output says so).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import multiprocessing.connection
import time
from typing import Any

import aiohttp
import orjson

from . import (
    Child,
    Options,
    child_cpu_seconds,
    maybe_profile,
    median,
    print_table,
    print_targets,
    sched_seconds,
    section,
    serve_commands,
    target,
)

NAME = "bulk"
LATENCY = 0.025
CONCURRENCY = 32  # BulkRun's default
PER_USER = 4  # BulkRun's default


def _serve(conn: multiprocessing.connection.Connection, kwargs: dict[str, Any]) -> None:
    asyncio.run(_serve_async(conn, kwargs))


async def _serve_async(conn: multiprocessing.connection.Connection,
                       kwargs: dict[str, Any]) -> None:
    from oxlin_async.testing import Faults, OxlinSandbox

    latency = kwargs.pop("latency")
    t0 = time.perf_counter()
    sandbox = OxlinSandbox(**kwargs, faults=Faults(latency=latency))
    sandbox.state.materialize()  # build every user's data before any clock starts
    built = time.perf_counter() - t0
    async with sandbox:
        conn.send(("ready", {
            "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
            "urls": {"auth_url": sandbox.auth_url, "api_url": sandbox.api_url,
                     "embed_url": sandbox.embed_url},
            "users": [(u.email, u.password) for u in sandbox.users],
            "build_s": built,
        }))
        counters = sandbox.state.counters

        def stats(_: Any) -> dict[str, Any]:
            return {"requests": dict(counters.requests), "grants": dict(counters.grants),
                    "faults": dict(counters.faults), "cpu": child_cpu_seconds()}

        def reset(_: Any) -> None:
            counters.reset()

        await serve_commands(conn, {"stats": stats, "reset": reset})


async def ours(info: dict[str, Any], users: list[tuple[str, str]], expected: int,
               profile: dict[str, Any] | None = None) -> dict[str, Any]:
    import oxlin_async as ox
    from oxlin_async.bulk import BulkUser

    env = ox.Environment(**info["urls"])
    async with ox.OxlinClient(info["client_id"], info["client_secret"],
                              environment=env) as client:
        run = client.bulk_transactions([BulkUser.with_password(e, p) for e, p in users],
                                       concurrency=CONCURRENCY,
                                       per_user_concurrency=PER_USER)
        gc.collect()
        n = batches = 0
        wait0 = sched_seconds()[1]
        cpu0, t0 = time.process_time(), time.perf_counter()
        async for batch in run:
            n += len(batch.transactions)
            batches += 1
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        wait = sched_seconds()[1] - wait0
    assert run.result is not None
    if not run.result.ok or n != expected:
        failed = run.result.failed[:3]
        raise RuntimeError(f"bulk run got {n} of {expected} transactions; failed: {failed}")
    return {"wall_s": wall, "client_cpu_s": cpu, "client_cpu_wait_s": wait,
            "transactions": n, "batches": batches,
            "client_counted_requests": sum(u.requests for u in run.result.users),
            "client_counted_retries": sum(u.retries for u in run.result.users)}


async def sequential(info: dict[str, Any], users: list[tuple[str, str]]) -> dict[str, Any]:
    """One user after the other, one request after the other (raw aiohttp + orjson)."""
    urls = info["urls"]
    basic = base64.b64encode(f"{info['client_id']}:{info['client_secret']}".encode()).decode()
    n = requests = 0
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        for email, password in users:
            async with http.post(f"{urls['auth_url']}/token",
                                 headers={"Authorization": f"Basic {basic}"},
                                 data={"grant_type": "password", "username": email,
                                       "password": password,
                                       "scope": "accounts_read transactions_read"}) as r:
                r.raise_for_status()
                token = orjson.loads(await r.read())["access_token"]
            requests += 1
            auth = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{urls['api_url']}/accounts", headers=auth,
                                params={"page": "1", "limit": "500"}) as r:
                r.raise_for_status()
                accounts = orjson.loads(await r.read())
            requests += 1
            for account in accounts:
                page = 1
                while True:
                    async with http.get(f"{urls['api_url']}/transactions", headers=auth,
                                        params={"account_id": account["id"],
                                                "page": str(page), "limit": "500"}) as r:
                        r.raise_for_status()
                        items = orjson.loads(await r.read())
                    requests += 1
                    n += len(items)
                    if len(items) < 500:
                        break
                    page += 1
    return {"wall_s": time.perf_counter() - t0, "transactions": n, "requests": requests}


def _total(requests: dict[str, int]) -> int:
    return sum(requests.values())


async def run_async(opts: Options, server: Child, users_all: list[tuple[str, str]],
                    per_user_tx: int, seq_users: int) -> dict[str, Any]:
    info = server.info
    expected = len(users_all) * per_user_tx
    # warm-up on a few users (imports, converter compilation); not counted
    await ours(info, users_all[:4], 4 * per_user_tx)
    await sequential(info, users_all[:2])

    runs: list[dict[str, Any]] = []
    seq_runs: list[dict[str, Any]] = []
    for r in range(opts.repeats):
        server.call("reset")
        before = server.call("stats")
        server_sched = sched_seconds(server.process.pid)
        result = await ours(info, users_all, expected)
        after = server.call("stats")
        result["server_cpu_wait_s"] = sched_seconds(server.process.pid)[1] - server_sched[1]
        result["server_requests"] = after["requests"]
        result["server_requests_total"] = _total(after["requests"])
        result["grants"] = after["grants"]
        result["server_cpu_s"] = after["cpu"] - before["cpu"]
        result["ideal_s"] = result["server_requests_total"] * LATENCY / CONCURRENCY
        result["wall_over_ideal"] = result["wall_s"] / result["ideal_s"]
        runs.append(result)
        # the sequential client on a subset, users taken in turn across the runs
        start = (r * seq_users) % max(1, len(users_all) - seq_users)
        subset = users_all[start:start + seq_users]
        seq = await sequential(info, subset)
        seq["users"] = len(subset)
        seq["extrapolated_s"] = seq["wall_s"] * len(users_all) / len(subset)
        seq_runs.append(seq)
    out: dict[str, Any] = {"runs": runs, "sequential_runs": seq_runs}
    if opts.profile:
        with maybe_profile(True, "bulk: oxlin-async bulk_transactions", out):
            await ours(info, users_all, expected)
    return out


def _schedule_diagnostic(opts: Options, n_users: int) -> dict[str, Any]:
    """The same run with 10 transactions per account: nearly no decoding, so the wall
    time shows how well the scheduler fills the request slots. No target."""
    per_account = 10
    kwargs = {"users": n_users, "seed": 12, "accounts_per_user": 2,
              "transactions_per_account": per_account, "latency": LATENCY,
              "token_lifetime": 3600}

    async def go(server: Child) -> list[dict[str, Any]]:
        users = server.info["users"]
        await ours(server.info, users[:4], 4 * 2 * per_account)
        runs = []
        for _ in range(opts.repeats):
            server.call("reset")
            result = await ours(server.info, users, len(users) * 2 * per_account)
            after = server.call("stats")
            result["server_requests_total"] = _total(after["requests"])
            result["ideal_s"] = result["server_requests_total"] * LATENCY / CONCURRENCY
            result["wall_over_ideal"] = result["wall_s"] / result["ideal_s"]
            runs.append(result)
        return runs

    with Child(_serve, kwargs) as server:
        runs = asyncio.run(go(server))
    ratio = median([r["wall_over_ideal"] for r in runs])
    print(f"  (diagnostic, no target) the same with {per_account} transactions per account "
          f"(nearly no decoding): wall {median([r['wall_s'] for r in runs]):.2f} s, ideal "
          f"{median([r['ideal_s'] for r in runs]):.2f} s "
          f"({median([r['server_requests_total'] for r in runs]):.0f} requests), "
          f"wall/ideal {ratio:.2f}x, client CPU {median([r['client_cpu_s'] for r in runs]):.2f}"
          f" s, waiting for a CPU {median([r['client_cpu_wait_s'] for r in runs]):.2f} s",
          flush=True)
    return {"transactions_per_account": per_account, "runs": runs,
            "median_wall_over_ideal": ratio}


def run(opts: Options) -> dict[str, Any]:
    section("bulk: bulk_transactions over many users, emulator (25 ms) in another process")
    n_users = opts.pick(200, 50)
    accounts, per_account = 2, 1000
    seq_users = opts.pick(10, 5)
    kwargs = {"users": n_users, "seed": 11, "accounts_per_user": accounts,
              "transactions_per_account": per_account, "latency": LATENCY,
              "token_lifetime": 3600}
    t0 = time.perf_counter()
    with Child(_serve, kwargs) as server:
        users_all = server.info["users"]
        print(f"  {n_users} users x {accounts} accounts x {per_account:,} transactions "
              f"= {n_users * accounts * per_account:,}; emulator started in another process "
              f"in {time.perf_counter() - t0:.1f} s (population built before timing)",
              flush=True)
        res = asyncio.run(run_async(opts, server, users_all, accounts * per_account,
                                    seq_users))
    runs, seq_runs = res["runs"], res["sequential_runs"]
    wall = median([r["wall_s"] for r in runs])
    ideal = median([r["ideal_s"] for r in runs])
    ratio = median([r["wall_over_ideal"] for r in runs])
    seq_total = median([s["extrapolated_s"] for s in seq_runs])
    speedup = seq_total / wall
    requests = median([r["server_requests_total"] for r in runs])
    minimum = n_users * (1 + 1 + accounts * (per_account // 500 + 1))
    print(f"  bulk_transactions(concurrency={CONCURRENCY}, "
          f"per_user_concurrency={PER_USER}); median of {len(runs)} runs")
    rows = [
        ["oxlin-async bulk_transactions wall", wall, "s"],
        ["  client CPU during the run", median([r["client_cpu_s"] for r in runs]), "s"],
        ["  client runnable but waiting for a CPU (machine noise)",
         median([r["client_cpu_wait_s"] for r in runs]), "s"],
        ["  emulator CPU during the run (other process)",
         median([r["server_cpu_s"] for r in runs]), "s"],
        ["  emulator waiting for a CPU",
         median([r["server_cpu_wait_s"] for r in runs]), "s"],
        ["requests received by the emulator (per run)", requests, ""],
        ["  of which token requests",
         median([r["server_requests"].get("POST /auth/token", 0) for r in runs]), ""],
        ["  minimum needed (token + accounts + pages to the short one)", minimum, ""],
        [f"ideal = requests x {LATENCY * 1000:.0f} ms / {CONCURRENCY}", ideal, "s"],
        [f"sequential, measured on {seq_runs[0]['users']} of {n_users} users",
         median([s["wall_s"] for s in seq_runs]), "s"],
        [f"sequential, extrapolated to {n_users} users", seq_total, "s"],
    ]
    print_table(["measure", "value", "unit"], rows)
    last = runs[-1]["server_requests"]
    print("  requests by route (last run): " + ", ".join(
        f"{route} {count}" for route, count in sorted(last.items())))
    print(f"  note: the sequential figure is extrapolated linearly from "
          f"{seq_runs[0]['users']} users per run (a full sequential run would take "
          f"~{seq_total:.0f} s)")
    cpu = median([r["client_cpu_s"] for r in runs])
    print(f"  (info) the client's CPU alone, {cpu:.2f} s, is {cpu / ideal:.1f}x the ideal: "
          f"{cpu * 1e6 / (n_users * accounts * per_account):.1f} µs of CPU per transaction "
          "(see the decode benchmark)")
    server_cpu = median([r["server_cpu_s"] for r in runs])
    print(f"  (info) the emulator's own CPU, {server_cpu:.2f} s, is {server_cpu / ideal:.1f}x "
          "the ideal: at the ideal pace this emulator could not keep up either")
    diag = _schedule_diagnostic(opts, n_users)
    out = {
        "users": n_users, "accounts_per_user": accounts, "transactions_per_account": per_account,
        "latency_s": LATENCY, "concurrency": CONCURRENCY, "per_user_concurrency": PER_USER,
        "median_wall_s": wall, "median_ideal_s": ideal, "median_requests": requests,
        "minimum_requests": minimum, "sequential_users_measured": seq_runs[0]["users"],
        "sequential_extrapolated_s": seq_total, **res, "schedule_diagnostic": diag,
        "targets": [
            target("wall / ideal (median of per-run ratios)", ratio, "<=", 1.2, unit="x",
                   note=f"wall {wall:.2f} s, ideal {ideal:.2f} s"),
            target("speed-up over sequential (extrapolated)", speedup, ">=", 20, unit="x",
                   note=f"sequential {seq_total:.1f} s vs {wall:.2f} s"),
        ],
    }
    print()
    print_targets(out["targets"])
    return out
