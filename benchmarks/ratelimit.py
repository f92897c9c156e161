"""ratelimit: how close a bulk export rides to the API's rate limit, and how politely.

The emulator runs in ANOTHER PROCESS, limited to ``RATE`` requests a second per client id
(`oxlin_async.testing.RateLimit`, burst one second's worth, 429 with Retry-After beyond),
with ``LATENCY`` (plus up to ``JITTER``) added to every admitted answer, as an API far
away would. The export is
the real command line, ``python -m oxlin_async export``, in processes of its own, over
``USERS`` users; scenarios, each on a fresh limit (a full bucket) and fresh counters:

* ``--concurrency auto`` (the default);
* ``--concurrency 8``: a fixed low setting (below the limit: 8 / latency < RATE);
* ``--concurrency 128``: a fixed high one (far above it);
* ``--workers 2``: the sharded export's own two worker processes (two shards, split by
  the hash of each user's key), each with ``--concurrency auto`` (each adapts on its
  own) and the same client id: they share the one limit. Its wall time includes
  starting the two workers and the commit.

Figures, from the emulator's ground truth (``state.counters``): requests admitted and
refused; admitted requests per second (from the first admitted request to the last); the
share of the limit used: (admitted - the burst) / that time / RATE, the burst being the
full bucket every run starts with (a gift that would make a short run pass 100 %: what
counts is riding the refill); the share refused (429 / all metered requests); wall time
from launch to the last exit.
Targets: auto >= 90 % of the limit with <= 2 % refused, and faster than both fixed
settings; two workers together >= 90 % and <= 2 %. Every export must be complete.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing.connection
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from . import Child, Options, print_table, print_targets, section, serve_commands, target

NAME = "ratelimit"
RATE = 200.0
LATENCY = 0.05
#: answers vary, as a real API's do (uniform, on top of LATENCY)
JITTER = 0.02
USERS = 200
ACCOUNTS = 8
TRANSACTIONS = 50  # one page per account: 11 requests a user, ~7,000 rows a second


def _serve(conn: multiprocessing.connection.Connection, kwargs: dict[str, Any]) -> None:
    asyncio.run(_serve_async(conn, kwargs))


async def _serve_async(conn: multiprocessing.connection.Connection,
                       kwargs: dict[str, Any]) -> None:
    from oxlin_async.testing import Faults, OxlinSandbox, RateLimit

    rate, latency, jitter = kwargs.pop("rate"), kwargs.pop("latency"), kwargs.pop("jitter")
    sandbox = OxlinSandbox(**kwargs, faults=Faults(latency=latency, jitter=jitter),
                           rate_limit=RateLimit(rate))
    sandbox.state.materialize()  # every user's data built before any clock starts
    counters = sandbox.state.counters
    window: dict[str, float | None] = {"first": None, "last": None}
    seen = {"admitted": 0}

    async def watch() -> None:
        # When admissions happen, to 10 ms: the window the share of the limit is over.
        while True:
            if counters.admitted != seen["admitted"]:
                now = time.monotonic()
                if window["first"] is None:
                    window["first"] = now
                window["last"] = now
                seen["admitted"] = counters.admitted
            await asyncio.sleep(0.01)

    async with sandbox:
        watcher = asyncio.get_running_loop().create_task(watch())
        conn.send(("ready", {
            "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
            "urls": {"auth_url": sandbox.auth_url, "api_url": sandbox.api_url,
                     "embed_url": sandbox.embed_url},
            "users": [(u.email, u.password) for u in sandbox.users]}))

        def reset(_: Any) -> None:
            counters.reset()
            seen["admitted"] = 0
            window["first"] = window["last"] = None
            sandbox.rate_limit = RateLimit(rate)  # every bucket full again

        def stats(_: Any) -> dict[str, Any]:
            first, last = window["first"], window["last"]
            return {"admitted": counters.admitted, "refused": counters.refused,
                    "requests": sum(counters.requests.values()),
                    "window_s": (last - first) if first is not None and last is not None
                    else 0.0}

        try:
            await serve_commands(conn, {"reset": reset, "stats": stats})
        finally:
            watcher.cancel()


def _export(info: dict[str, Any], concurrency: str, workers: int, folder: str
            ) -> subprocess.Popen[bytes]:
    path = os.path.join(folder, "users.csv")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{email},{password}\n" for email, password in info["users"])
    env = {**os.environ, "OXLIN_CLIENT_ID": info["client_id"],
           "OXLIN_CLIENT_SECRET": info["client_secret"]}
    urls = info["urls"]
    out = (["--out", os.path.join(folder, "tx.jsonl"), "--overwrite"] if workers == 1
           else ["--out", os.path.join(folder, "parts"), "--workers", str(workers)])
    return subprocess.Popen(
        [sys.executable, "-m", "oxlin_async", "export", "--users", path,
         "--auth-url", urls["auth_url"], "--api-url", urls["api_url"],
         "--embed-url", urls["embed_url"], "--concurrency", concurrency, *out, "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _reports(folder: str, workers: int) -> list[dict[str, Any]]:
    """The export's report, or each shard's; "transactions" for both."""
    if workers == 1:
        names = ["tx.jsonl.report.json"]
    else:
        folder = os.path.join(folder, "parts")
        names = sorted(n for n in os.listdir(folder) if n.endswith(".report.json"))
    reports = []
    for name in names:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            report = json.load(f)
        report.setdefault("transactions", report.get("rows", 0))
        reports.append(report)
    return reports


def scenario(child: Child, info: dict[str, Any], concurrency: str, workers: int
             ) -> dict[str, Any]:
    child.call("reset")
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        proc = _export(info, concurrency, workers, folder)
        error = proc.communicate()[1].decode()
        wall = time.perf_counter() - t0
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"the export exited {proc.returncode}: {error[-500:]}")
        reports = _reports(folder, workers)
    stats = child.call("stats")
    metered = stats["admitted"] + stats["refused"]
    return {
        "concurrency": concurrency, "workers": workers, "wall_s": wall,
        "admitted": stats["admitted"], "refused": stats["refused"],
        "window_s": stats["window_s"],
        "admitted_rps": stats["admitted"] / stats["window_s"] if stats["window_s"] else 0.0,
        # the bucket starts full (one second of the rate): not a pace one can keep
        "limit_share": max(0, stats["admitted"] - RATE) / stats["window_s"] / RATE
        if stats["window_s"] else 0.0,
        "refused_share": stats["refused"] / metered if metered else 0.0,
        "failed_users": sum(r["failed"] for r in reports),
        "transactions": sum(r["transactions"] for r in reports),
        "per_worker": [{"elapsed_s": r["elapsed_seconds"], "concurrency": r["concurrency"],
                        "requests": sum(u["requests"] for u in r["results"])}
                       for r in reports],
    }


SCENARIOS = (("auto", "auto", 1), ("fixed 8", "8", 1), ("fixed 128", "128", 1),
             ("--workers 2 (auto)", "auto", 2))


def run(opts: Options) -> dict[str, Any]:
    users = opts.pick(USERS, 100)
    section(f"ratelimit: {users} users against a limit of {RATE:g} requests/s "
            f"({LATENCY * 1000:g} ms latency + up to {JITTER * 1000:g} ms)")
    kwargs = {"users": users, "seed": 14, "accounts_per_user": ACCOUNTS,
              "transactions_per_account": TRANSACTIONS, "rate": RATE, "latency": LATENCY,
              "jitter": JITTER}
    expected = users * ACCOUNTS * TRANSACTIONS
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in SCENARIOS}
    repeats = opts.pick(min(opts.repeats, 3), 1)
    with Child(_serve, kwargs) as child:
        for _ in range(repeats):
            for name, concurrency, workers in SCENARIOS:
                res = scenario(child, child.info, concurrency, workers)
                runs[name].append(res)
                print(f"  {name}: {res['wall_s']:.1f} s, {res['limit_share']:.1%} of the "
                      f"limit, {res['refused_share']:.2%} refused, "
                      f"{res['failed_users']} failed users", flush=True)

    def med(name: str, key: str) -> float:
        values = sorted(r[key] for r in runs[name])
        return float(values[len(values) // 2])

    rows = [[name, med(name, "wall_s"), f"{med(name, 'admitted_rps'):.0f}",
             f"{med(name, 'limit_share'):.1%}", f"{med(name, 'refused_share'):.2%}",
             int(med(name, "admitted")), int(med(name, "refused")),
             int(max(r["failed_users"] for r in runs[name]))]
            for name, _, _ in SCENARIOS]
    print(f"\n  median of {repeats} run(s) each; the emulator in its own process; the "
          "machine is shared, so figures are indicative")
    print_table(["scenario", "wall s", "admitted/s", "of limit", "refused", "admitted",
                 "429s", "failed users"], rows)
    for name in runs:
        for r in runs[name]:
            if r["transactions"] != expected and r["failed_users"] == 0:
                raise RuntimeError(f"{name}: {r['transactions']} of {expected} transactions")
    auto_wall = med("auto", "wall_s")
    targets = [
        target("auto: share of the limit used", 100 * med("auto", "limit_share"), ">=", 90,
               unit="%"),
        target("auto: share of requests refused (429)", 100 * med("auto", "refused_share"),
               "<=", 2, unit="%"),
        target("auto: wall time / fixed 8", auto_wall / med("fixed 8", "wall_s"), "<=", 1.0),
        target("auto: wall time / fixed 128", auto_wall / med("fixed 128", "wall_s"),
               "<=", 1.0),
        target("--workers 2: share of the limit used",
               100 * med("--workers 2 (auto)", "limit_share"), ">=", 90, unit="%"),
        target("--workers 2: share of requests refused (429)",
               100 * med("--workers 2 (auto)", "refused_share"), "<=", 2, unit="%"),
        target("failed users, auto and --workers 2",
               max(r["failed_users"] for name in ("auto", "--workers 2 (auto)")
                   for r in runs[name]), "==", 0),
    ]
    print()
    print_targets(targets)
    return {"rate": RATE, "latency_s": LATENCY, "jitter_s": JITTER, "users": users, "runs": runs,
            "targets": targets}
