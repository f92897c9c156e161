"""bulk: wall time of ``client.bulk_transactions(...)`` over many users, against a raw
aiohttp + orjson fan-out client making the same requests at the same concurrency in this
same process (the floor of any aiohttp client), and against a sequential client.

The emulator's population is rebuilt with realistic transactions (`transaction_records`:
every item drawn on its own, its own import and update instants) before any clock starts.

The emulator (``OxlinSandbox``, 25 ms added latency on every request, token requests
included) runs in ANOTHER PROCESS. Why: each emulator page request filters and sorts
the account's 1,000 records and renders 500 of them (``to_json`` + orjson), a couple of
ms of CPU; over ~1,200 page requests that is seconds of CPU which, in this process,
would share the client's one thread and be counted as the SDK's time. Its request
counters come back over a pipe; the population is built before the clock starts.

* raw fan-out = the same requests (token, /users/me, /categories once per run,
  /accounts, each account's pages with a look-ahead doubling up to 4 pages) through one
  aiohttp session, at most 32 requests in flight and 4 per user, 32 users at once; the
  pages decoded by orjson into dicts and counted;
* ideal (info) = (requests the emulator actually received, token requests included) x
  latency / concurrency: every request slot busy all the time, zero CPU;
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
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import aiohttp
import orjson

from . import (
    FIRST_TX_ID,
    Child,
    Options,
    child_cpu_seconds,
    load_average,
    maybe_profile,
    median,
    print_table,
    print_targets,
    sched_seconds,
    section,
    serve_commands,
    target,
    transaction_records,
)

NAME = "bulk"
LATENCY = 0.025
CONCURRENCY = 32  # BulkRun's default
PER_USER = 4  # BulkRun's default
WORKERS = 2  # issue 12: --workers 2 on 2 cores


def _serve(conn: multiprocessing.connection.Connection, kwargs: dict[str, Any]) -> None:
    asyncio.run(_serve_async(conn, kwargs))


async def _serve_async(conn: multiprocessing.connection.Connection,
                       kwargs: dict[str, Any]) -> None:
    from oxlin_async.testing import Faults, OxlinSandbox

    latency = kwargs.pop("latency")
    realistic = kwargs.pop("realistic", True)
    t0 = time.perf_counter()
    sandbox = OxlinSandbox(**kwargs, faults=Faults(latency=latency))
    sandbox.state.materialize()  # build every user's data before any clock starts
    if realistic:
        _realistic(sandbox, kwargs["transactions_per_account"])
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


def _realistic(sandbox: Any, per_account: int) -> None:
    """Every account's transactions replaced by realistic ones (its own ids, dates,
    import and update instants), as the walk benchmark serves them."""
    g = 0
    for user in sandbox.users:
        data = sandbox.state.data(int(user.id))
        for account_id in list(data.transactions):
            data.transactions[account_id] = transaction_records(
                0, per_account, total=per_account, seed=1000 + g, account_id=account_id,
                first_id=FIRST_TX_ID + 2 * g * per_account)
            g += 1


async def ours(info: dict[str, Any], users: list[tuple[str, str]], expected: int,
               profile: dict[str, Any] | None = None, models: bool = False
               ) -> dict[str, Any]:
    import oxlin_async as ox
    from oxlin_async.bulk import BulkUser

    env = ox.Environment(**info["urls"])
    async with ox.OxlinClient(info["client_id"], info["client_secret"],
                              environment=env) as client:
        run = client.bulk_transactions([BulkUser.with_password(e, p) for e, p in users],
                                       concurrency=CONCURRENCY,
                                       per_user_concurrency=PER_USER, models=models)
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


async def fan_out(info: dict[str, Any], users: list[tuple[str, str]],
                  expected: int) -> dict[str, Any]:
    """The raw floor: the SDK's requests, at its concurrency, with nothing but aiohttp
    and orjson (pages decoded into dicts and counted)."""
    urls = info["urls"]
    basic = base64.b64encode(f"{info['client_id']}:{info['client_secret']}".encode()).decode()
    everyone = asyncio.Semaphore(CONCURRENCY)
    n = requests = 0
    categories: list[Any] | None = None
    categories_lock = asyncio.Lock()
    gc.collect()
    wait0 = sched_seconds()[1]
    cpu0, t0 = time.process_time(), time.perf_counter()
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:

        async def call(mine: asyncio.Semaphore, method: str, url: str, **kw: Any) -> Any:
            nonlocal requests
            async with mine, everyone, http.request(method, url, **kw) as r:
                r.raise_for_status()
                body = await r.read()
            requests += 1
            return orjson.loads(body)

        async def account(mine: asyncio.Semaphore, auth: dict[str, str],
                          account_id: str) -> None:
            nonlocal n
            page, window, done = 1, 1, False
            while not done:
                got = await asyncio.gather(*(
                    call(mine, "GET", f"{urls['api_url']}/transactions", headers=auth,
                         params={"account_id": account_id, "page": str(p),
                                 "limit": "500"})
                    for p in range(page, page + window)))
                for items in got:
                    n += len(items)
                    done = done or len(items) < 500
                page, window = page + window, min(PER_USER, window * 2)

        async def user(email: str, password: str) -> None:
            nonlocal categories
            mine = asyncio.Semaphore(PER_USER)
            token = (await call(mine, "POST", f"{urls['auth_url']}/token",
                                headers={"Authorization": f"Basic {basic}"},
                                data={"grant_type": "password", "username": email,
                                      "password": password,
                                      "scope": "openid profile accounts_read "
                                               "transactions_read"}))["access_token"]
            auth = {"Authorization": f"Bearer {token}"}

            async def read_categories() -> None:
                nonlocal categories
                async with categories_lock:
                    if categories is None:
                        categories = await call(mine, "GET", f"{urls['api_url']}/categories",
                                                headers=auth)

            accounts, _, _ = await asyncio.gather(
                call(mine, "GET", f"{urls['api_url']}/accounts", headers=auth,
                     params={"page": "1", "limit": "500"}),
                call(mine, "GET", f"{urls['api_url']}/users/me", headers=auth),
                read_categories())
            await asyncio.gather(*(account(mine, auth, a["id"]) for a in accounts))

        queue = list(reversed(users))

        async def worker() -> None:
            while queue:
                await user(*queue.pop())

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if n != expected:
        raise RuntimeError(f"raw fan-out got {n} of {expected} transactions")
    return {"wall_s": wall, "client_cpu_s": cpu,
            "client_cpu_wait_s": sched_seconds()[1] - wait0, "transactions": n,
            "requests": requests}


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
    await ours(info, users_all[:4], 4 * per_user_tx, models=True)
    await fan_out(info, users_all[:4], 4 * per_user_tx)
    await sequential(info, users_all[:2])

    runs: list[dict[str, Any]] = []
    model_runs: list[dict[str, Any]] = []
    raw_runs: list[dict[str, Any]] = []
    seq_runs: list[dict[str, Any]] = []
    for r in range(opts.repeats):
        # the clients take turns, so machine noise hits them alike
        order = ["rows", "raw", "models"] if r % 2 == 0 else ["models", "raw", "rows"]
        for which in order:
            server.call("reset")
            before = server.call("stats")
            server_sched = sched_seconds(server.process.pid)
            if which == "raw":
                result = await fan_out(info, users_all, expected)
            else:
                result = await ours(info, users_all, expected, models=which == "models")
            after = server.call("stats")
            result["server_cpu_wait_s"] = (sched_seconds(server.process.pid)[1]
                                           - server_sched[1])
            result["server_requests"] = after["requests"]
            result["server_requests_total"] = _total(after["requests"])
            result["grants"] = after["grants"]
            result["server_cpu_s"] = after["cpu"] - before["cpu"]
            result["ideal_s"] = result["server_requests_total"] * LATENCY / CONCURRENCY
            result["wall_over_ideal"] = result["wall_s"] / result["ideal_s"]
            {"rows": runs, "models": model_runs, "raw": raw_runs}[which].append(result)
        # the sequential client on a subset, users taken in turn across the runs
        start = (r * seq_users) % max(1, len(users_all) - seq_users)
        subset = users_all[start:start + seq_users]
        seq = await sequential(info, subset)
        seq["users"] = len(subset)
        seq["extrapolated_s"] = seq["wall_s"] * len(users_all) / len(subset)
        seq_runs.append(seq)
    out: dict[str, Any] = {"runs": runs, "model_runs": model_runs, "raw_runs": raw_runs,
                           "sequential_runs": seq_runs}
    if opts.profile:
        with maybe_profile(True, "bulk: oxlin-async bulk_transactions(models=False)", out):
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
        print(f"  {n_users} users x {accounts} accounts x {per_account:,} realistic "
              f"transactions = {n_users * accounts * per_account:,}; emulator started in "
              f"another process in {time.perf_counter() - t0:.1f} s (population built "
              "before timing)", flush=True)
        res = asyncio.run(run_async(opts, server, users_all, accounts * per_account,
                                    seq_users))
        measured = _workers_runs(opts, server, n_users * accounts * per_account)
    runs, model_runs, raw_runs = res["runs"], res["model_runs"], res["raw_runs"]
    seq_runs = res["sequential_runs"]

    def med(rs: list[dict[str, Any]], key: str) -> float:
        return median([r[key] for r in rs])

    wall, raw_wall, model_wall = med(runs, "wall_s"), med(raw_runs, "wall_s"), \
        med(model_runs, "wall_s")
    over_raw = median([a["wall_s"] / b["wall_s"] for a, b in zip(runs, raw_runs, strict=True)])
    models_over_raw = median([a["wall_s"] / b["wall_s"]
                              for a, b in zip(model_runs, raw_runs, strict=True)])
    ideal = med(runs, "ideal_s")
    seq_total = median([s["extrapolated_s"] for s in seq_runs])
    speedup = seq_total / wall
    minimum = n_users * (1 + 1 + accounts * (per_account // 500 + 1))
    print(f"  bulk_transactions(concurrency={CONCURRENCY}, per_user_concurrency={PER_USER}), "
          f"raw fan-out at the same limits; median of {len(runs)} runs, in turns")
    rows = []
    for label, rs in (("oxlin-async, models=False (rows, the export's path)", runs),
                      ("oxlin-async, models=True (Transaction models)", model_runs),
                      ("raw aiohttp + orjson fan-out (floor)", raw_runs)):
        rows.append([label, med(rs, "wall_s"), med(rs, "client_cpu_s"),
                     med(rs, "client_cpu_wait_s"), med(rs, "server_cpu_s"),
                     med(rs, "server_requests_total")])
    print_table(["client", "wall s", "client CPU s", "waiting for a CPU s",
                 "emulator CPU s", "requests"], rows)
    extra = [
        ["  of which token requests (rows run)",
         median([r["server_requests"].get("POST /auth/token", 0) for r in runs]), ""],
        ["  minimum needed (token + accounts + pages to the short one)", minimum, ""],
        [f"(info) ideal = requests x {LATENCY * 1000:.0f} ms / {CONCURRENCY}", ideal, "s"],
        [f"sequential, measured on {seq_runs[0]['users']} of {n_users} users",
         median([s["wall_s"] for s in seq_runs]), "s"],
        [f"sequential, extrapolated to {n_users} users", seq_total, "s"],
    ]
    print_table(["measure", "value", "unit"], extra)
    last = runs[-1]["server_requests"]
    print("  requests by route (last rows run): " + ", ".join(
        f"{route} {count}" for route, count in sorted(last.items())))
    print(f"  note: the sequential figure is extrapolated linearly from "
          f"{seq_runs[0]['users']} users per run (a full sequential run would take "
          f"~{seq_total:.0f} s)")
    total_tx = n_users * accounts * per_account
    per_tx = {k: med(rs, "client_cpu_s") * 1e6 / total_tx
              for k, rs in (("rows", runs), ("models", model_runs), ("raw", raw_runs))}
    print(f"  (info) client CPU per transaction: rows {per_tx['rows']:.1f} µs, models "
          f"{per_tx['models']:.1f} µs, raw {per_tx['raw']:.1f} µs; rows wall / ideal "
          f"{wall / ideal:.2f}x")
    print(f"  (info) models=True / raw fan-out: {models_over_raw:.2f}x "
          f"({model_wall:.2f} s vs {raw_wall:.2f} s)")
    workers = _workers_figure(opts, measured, n_users * accounts * per_account)
    diag = _schedule_diagnostic(opts, n_users)
    out = {
        "users": n_users, "accounts_per_user": accounts, "transactions_per_account": per_account,
        "latency_s": LATENCY, "concurrency": CONCURRENCY, "per_user_concurrency": PER_USER,
        "median_wall_s": wall, "median_raw_fan_out_wall_s": raw_wall,
        "median_models_wall_s": model_wall, "median_ideal_s": ideal,
        "minimum_requests": minimum, "sequential_users_measured": seq_runs[0]["users"],
        "sequential_extrapolated_s": seq_total, **res, "schedule_diagnostic": diag,
        "workers": workers,
        "targets": [
            target("wall / raw aiohttp+orjson fan-out wall (models=False; median of paired "
                   "runs)", over_raw, "<=", 1.25, unit="x",
                   note=f"{wall:.2f} s vs {raw_wall:.2f} s"),
            target("speed-up over sequential (extrapolated)", speedup, ">=", 20, unit="x",
                   note=f"sequential {seq_total:.1f} s vs {wall:.2f} s"),
            workers["target"],
        ],
    }
    print()
    print_targets(out["targets"])
    return out


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every process, every core) since
    boot, from Linux's /proc/stat; nan elsewhere."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _workers_runs(opts: Options, server: Child, expected: int) -> dict[str, Any]:
    """The same export (``oxlin-async export --users ... --concurrency 32``, JSON Lines,
    the bulk run's emulator and realistic data) as one process and as ``--workers 2``
    (2 shards, the budget of 32 requests in flight shared), each a process timed from its
    start to its exit, taking turns; the CPU of each (its workers included) from the
    rusage of this process's finished children, the emulator's from its own counters."""
    from .scale import _cpu, _export, _rows, exporting

    base = ["--users", "users.csv", "--concurrency", str(CONCURRENCY)]

    def args(mode: str, name: str) -> list[str]:
        if mode == "one":
            return [*base, "--out", f"{name}.jsonl"]
        return [*base, "--out", name, "--workers", str(WORKERS)]

    def rows(folder: str, mode: str, name: str) -> int:
        path = os.path.join(folder, name + (".jsonl" if mode == "one" else ""))
        if mode != "one":
            n = _rows(path)
            shutil.rmtree(path)
            return n
        with open(path, "rb") as f:
            n = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        os.remove(path)
        return n

    runs: dict[str, list[dict[str, Any]]] = {"one": [], "workers": []}
    startup: list[dict[str, float]] = []
    with exporting(server.info) as folder:
        for mode in runs:  # warm-up (the file system's and the interpreter's caches)
            _export(args(mode, f"warm-{mode}"), folder)
            rows(folder, mode, f"warm-{mode}")
        for r in range(opts.repeats):
            for mode in ("one", "workers") if r % 2 == 0 else ("workers", "one"):
                server.call("reset")
                before, load = server.call("stats"), load_average()
                machine0 = _machine_busy()
                wall, cpu = _export(args(mode, f"{mode}{r}"), folder)
                machine = _machine_busy() - machine0
                after = server.call("stats")
                n = rows(folder, mode, f"{mode}{r}")
                if n != expected:
                    raise RuntimeError(f"the {mode} export wrote {n} of {expected} rows")
                runs[mode].append({
                    "wall_s": wall, "client_cpu_s": cpu,
                    "server_cpu_s": after["cpu"] - before["cpu"],
                    "machine_busy_cpu_s": machine,
                    "server_requests_total": _total(after["requests"]),
                    "rows": n, "load_average_before": load})
            # what starting a process costs (interpreter, imports, argument parsing): one
            # for one process, at least one more (the workers', in parallel) for --workers
            cpu0, t0 = _cpu(), time.perf_counter()
            subprocess.run([sys.executable, "-m", "oxlin_async", "export", "--help"],
                           capture_output=True, check=True, timeout=120)
            startup.append({"wall_s": time.perf_counter() - t0, "cpu_s": _cpu() - cpu0})
    return {"runs": runs, "startup": startup}


def _workers_figure(opts: Options, measured: dict[str, Any], expected: int
                    ) -> dict[str, Any]:
    """Issue 12's target: ``--workers 2`` on 2 cores >= 1.5 x one process, with the CPU
    figures that say whether the client or the machine is the limit."""
    one, two = measured["runs"]["one"], measured["runs"]["workers"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)

    def med(rs: list[dict[str, Any]], key: str) -> float:
        return median([r[key] for r in rs])

    speedup = median([a["wall_s"] / b["wall_s"] for a, b in zip(one, two, strict=True)])
    per_tx = {m: med(rs, "client_cpu_s") * 1e6 / expected
              for m, rs in (("one", one), ("workers", two))}
    server_tx = {m: med(rs, "server_cpu_s") * 1e6 / expected
                 for m, rs in (("one", one), ("workers", two))}
    # how busy the cores were: with our processes only (client and emulator), and in
    # all (other processes of this shared machine included)
    busy = {m: median([(r["client_cpu_s"] + r["server_cpu_s"]) / (r["wall_s"] * cores)
                       for r in rs]) for m, rs in (("one", one), ("workers", two))}
    machine = {m: median([min(1.0, r["machine_busy_cpu_s"] / (r["wall_s"] * cores))
                          for r in rs]) for m, rs in (("one", one), ("workers", two))}
    # The CPU ceiling, had the cores nothing else to run: one process needs at least its
    # own CPU time (one thread) and a share of the cores' time with the emulator;
    # --workers 2 at least the cores' time for its CPU and the emulator's.
    floor = {m: median([max(r["client_cpu_s"] / (1 if m == "one" else WORKERS),
                            (r["client_cpu_s"] + r["server_cpu_s"]) / cores)
                        for r in rs]) for m, rs in (("one", one), ("workers", two))}
    ceiling = floor["one"] / floor["workers"]
    print(f"\n  oxlin-async export, one process vs --workers {WORKERS} (--concurrency "
          f"{CONCURRENCY} shared; JSON Lines; each a process timed from start to exit; "
          f"median of {len(one)} pairs, in turns; {cores} cores)")
    rows = []
    for label, m, rs in (("one process", "one", one),
                         (f"--workers {WORKERS} (its processes included)", "workers", two)):
        rows.append([label, med(rs, "wall_s"), med(rs, "client_cpu_s"), per_tx[m],
                     med(rs, "server_cpu_s"), f"{busy[m]:.0%}", f"{machine[m]:.0%}",
                     med(rs, "server_requests_total")])
    print_table(["export", "wall s", "client CPU s", "client CPU µs/tx", "emulator CPU s",
                 "cores busy: ours", "in all", "requests"], rows)
    startup = median([s["wall_s"] for s in measured["startup"]])
    print(f"  (info) starting one export process (interpreter, imports; `export --help`): "
          f"{startup:.2f} s wall")
    # judged on the figure as printed, so that "90% busy" never reads "not all busy"
    limit = ("the machine is the limit (its cores were busy), not the client"
             if round(machine["workers"], 2) >= 0.9 else
             "the cores were not all busy: the client (its processes' start-up, "
             "their coordination, the latency) is the limit, not the machine")
    print(f"  note: client CPU per transaction {per_tx['one']:.1f} µs in one process, "
          f"{per_tx['workers']:.1f} µs with --workers {WORKERS} (its processes included); "
          f"the emulator shares the {cores} cores ({server_tx['workers']:.1f} µs/tx). During "
          f"--workers {WORKERS} the cores were {machine['workers']:.0%} busy "
          f"({busy['workers']:.0%} by the client and the emulator, "
          f"{max(0.0, machine['workers'] - busy['workers']):.0%} by other processes): "
          f"{limit}. With nothing else running, one process needs at least "
          f"{floor['one']:.2f} s (its CPU, one thread), --workers {WORKERS} at least "
          f"{floor['workers']:.2f} s (its and the emulator's CPU over {cores} cores): at "
          f"most {ceiling:.2f}x on this machine", flush=True)
    return {"measured": True, "workers": WORKERS, "cores": cores, **measured,
            "median_one_wall_s": med(one, "wall_s"), "median_workers_wall_s": med(two, "wall_s"),
            "speedup": speedup, "client_cpu_us_per_tx": per_tx,
            "emulator_cpu_us_per_tx": server_tx, "cores_busy_ours": busy,
            "cores_busy_all": machine,
            "cpu_floor_s": floor, "cpu_ceiling_speedup": ceiling,
            "median_startup_s": startup,
            "target": target(f"--workers {WORKERS} / one process (oxlin-async export; median "
                             "of paired runs)", speedup, ">=", 1.5, unit="x",
                             note=f"{med(one, 'wall_s'):.2f} s vs {med(two, 'wall_s'):.2f} s; "
                                  f"at most {ceiling:.2f}x on this machine's CPU")}
