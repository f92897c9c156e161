"""scale: the same export as one process, as ``--workers 2`` and on a Dask
``LocalCluster`` of 2 workers, and a model of a 100,000-user nightly sync.

The emulator (25 ms added latency) runs in its own process, as in the bulk benchmark.
Each measure is the ``oxlin-async export`` command run as a process, from its start to
its exit (interpreter start included, the same for all three): one process writing one
JSON Lines file; ``--workers 2 --shards 4`` (two local processes, then the commit);
``--dask ADDRESS --shards 4`` against a LocalCluster of 2 worker processes x 2 threads
started beforehand (its start-up is reported apart). The request budget is the same,
``--concurrency 32``, divided among the shards that run at once.

The model: requests and transactions per second per worker as measured here, the
workers a 100,000 users x 3 accounts x 1,000 transactions sync needs to finish within an
hour, and what the API's rate limit does to it (Oxlin publishes none, docs/oxlin-api
§11: the figures are given for a few assumed limits).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from . import Child, Options, median, print_table, print_targets, section, target
from .bulk import _serve

NAME = "scale"
LATENCY = 0.025
CONCURRENCY = 32
SHARDS = 4
#: the sync the model is about
MODEL_USERS, MODEL_ACCOUNTS, MODEL_TX = 100_000, 3, 1_000
PAGE = 500  # transactions per page (the API's maximum, the SDK's default)


def _cpu() -> float:
    """CPU seconds of this process's finished children (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _export(args: list[str], cwd: str) -> tuple[float, float]:
    """Wall and CPU seconds of ``oxlin-async export ARGS`` (the CPU of its own worker
    processes included, not that of a Dask cluster's)."""
    cpu, t0 = _cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "oxlin_async", "export", *args, "--quiet"],
                          cwd=cwd, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"export {' '.join(args)} failed: {done.stderr[-2000:]}")
    return wall, _cpu() - cpu


def _rows(path: str) -> int:
    import json

    with open(os.path.join(path, "_manifest.json"), encoding="utf-8") as f:
        return int(json.load(f)["rows"])


@contextlib.contextmanager
def exporting(info: dict[str, Any]) -> Iterator[str]:
    """A scratch folder holding ``users.csv`` (the emulator's users), with this process's
    environment set to the emulator's credentials and hosts meanwhile: every process of
    an export (the CLI, its workers, Dask's) reads them from its environment, as a
    worker of a real fleet does."""
    folder = tempfile.mkdtemp(prefix="oxlin-export-")
    saved = {k: os.environ.get(k) for k in ("OXLIN_CLIENT_ID", "OXLIN_CLIENT_SECRET",
                                           "OXLIN_AUTH_URL", "OXLIN_API_URL",
                                           "OXLIN_EMBED_URL")}
    try:
        os.environ.update({"OXLIN_CLIENT_ID": info["client_id"],
                           "OXLIN_CLIENT_SECRET": info["client_secret"],
                           **{f"OXLIN_{k.upper()}": v for k, v in info["urls"].items()}})
        with open(os.path.join(folder, "users.csv"), "w", encoding="utf-8") as f:
            f.writelines(f"{e},{p}\n" for e, p in info["users"])
        yield folder
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(folder, ignore_errors=True)


def run(opts: Options) -> dict[str, Any]:
    section("scale: one process vs --workers 2 vs Dask LocalCluster(2), emulator (25 ms) "
            "in another process")
    users, accounts, per_account = opts.pick(200, 60), 3, 100
    repeats = min(opts.repeats, 3)
    expected = users * accounts * per_account
    kwargs = {"users": users, "seed": 21, "accounts_per_user": accounts,
              "transactions_per_account": per_account, "latency": LATENCY,
              "token_lifetime": 3600}
    with Child(_serve, kwargs) as server, exporting(server.info) as folder:
        out = _measure(server, folder, repeats, expected)
    single, workers, dask = (median(out[k]) for k in ("single", "workers", "dask"))
    print(f"  {users} users x {accounts} accounts x {per_account} transactions = "
          f"{expected:,}; --concurrency {CONCURRENCY}; median of {repeats} runs each")
    print_table(["run", "wall s", "vs one process"], [
        ["one process (oxlin-async export)", single, "1.00x"],
        [f"--workers 2 --shards {SHARDS}", workers, f"{single / workers:.2f}x"],
        [f"--dask (LocalCluster 2 workers x 2 threads) --shards {SHARDS}", dask,
         f"{single / dask:.2f}x"],
        ["  LocalCluster start-up (not in the line above)", out["cluster_start_s"], ""],
        ["CPU s, one process", median(out["single_cpu"]), ""],
        ["CPU s, --workers 2 (its processes included)", median(out["workers_cpu"]), ""],
    ])
    model = _model(out, users, accounts, per_account)
    result = {"users": users, "accounts_per_user": accounts, "transactions_per_account":
              per_account, "latency_s": LATENCY, "concurrency": CONCURRENCY, **out,
              "median_single_s": single, "median_workers_s": workers,
              "median_dask_s": dask, "model": model,
              "targets": [
                  target("--workers 2 speed-up over one process", single / workers, ">=", 1.0,
                         unit="x", note=f"{single:.2f} s vs {workers:.2f} s"),
                  target("Dask LocalCluster(2) speed-up over one process", single / dask,
                         ">=", 1.0, unit="x", note=f"{single:.2f} s vs {dask:.2f} s"),
              ]}
    print()
    print_targets(result["targets"])
    return result


def _measure(server: Child, folder: str, repeats: int, expected: int) -> dict[str, Any]:
    import distributed

    users = ["--users", "users.csv", "--concurrency", str(CONCURRENCY)]
    out: dict[str, Any] = {"single": [], "workers": [], "dask": [], "requests": [],
                           "single_cpu": [], "workers_cpu": []}
    _export([*users, "--out", "warm.jsonl", "--overwrite"], folder)  # caches, not counted
    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=2,
                                       dashboard_address="127.0.0.1:0", processes=True)
    out["cluster_start_s"] = time.perf_counter() - t0
    try:
        for r in range(repeats):
            server.call("reset")
            wall, cpu = _export([*users, "--out", f"single{r}.jsonl"], folder)
            out["single"].append(wall)
            out["single_cpu"].append(cpu)
            out["requests"].append(sum(server.call("stats")["requests"].values()))
            wall, cpu = _export([*users, "--out", f"workers{r}", "--workers", "2",
                                 "--shards", str(SHARDS)], folder)
            out["workers"].append(wall)
            out["workers_cpu"].append(cpu)
            if _rows(os.path.join(folder, f"workers{r}")) != expected:
                raise RuntimeError("the --workers export is not complete")
            out["dask"].append(_export([*users, "--out", f"dask{r}", "--dask",
                                        cluster.scheduler_address, "--shards", str(SHARDS)],
                                       folder)[0])
            if _rows(os.path.join(folder, f"dask{r}")) != expected:
                raise RuntimeError("the Dask export is not complete")
    finally:
        cluster.close()
    return out


def _model(out: dict[str, Any], users: int, accounts: int, per_account: int
           ) -> dict[str, Any]:
    requests = median(out["requests"])
    expected = users * accounts * per_account
    # one process is one worker: its request rate (start-up included, so a floor) and
    # the transactions it decodes and writes per CPU second (its pace on a core of its own)
    per_worker_rps = requests / median(out["single"])
    per_worker_tps = expected / median(out["single_cpu"])
    # per user: the fixed requests (token, accounts, /users/me, a share of /categories)
    # measured here, and the pages of 3 accounts of 1,000: two full pages and the short
    # (empty) one that ends each walk
    measured_pages = accounts * (per_account // PAGE + 1)
    fixed = requests / users - measured_pages
    pages = MODEL_ACCOUNTS * (MODEL_TX // PAGE + 1)
    total_requests = MODEL_USERS * (fixed + pages)
    total_tx = MODEL_USERS * MODEL_ACCOUNTS * MODEL_TX
    need_rps, need_tps = total_requests / 3600, total_tx / 3600
    # at 1,000 transactions per account the pages are fuller: a worker is bound by its
    # request rate (latency x concurrency) or by its decoding rate, whichever is lower
    by_requests = math.ceil(need_rps / per_worker_rps)
    by_transactions = math.ceil(need_tps / per_worker_tps)
    needed = max(by_requests, by_transactions)
    print(f"\n  model: {MODEL_USERS:,} users x {MODEL_ACCOUNTS} accounts x {MODEL_TX:,} "
          f"transactions = {total_tx:,} in one hour")
    rows = [
        ["requests/s per worker, measured (one process, wall)", per_worker_rps, ""],
        ["transactions per CPU second per worker, measured", per_worker_tps, ""],
        ["requests per user (fixed, measured) + pages", fixed + pages, ""],
        ["requests/s the hour needs", need_rps, ""],
        ["transactions/s the hour needs", need_tps, ""],
        ["workers needed, by requests", by_requests, ""],
        ["workers needed, by transactions (CPU: one core each)", by_transactions, ""],
        ["workers needed (the larger)", needed, ""],
    ]
    print_table(["figure", "value", ""], rows)
    limits = {}
    for limit in (50, 100, 200, 500):
        hours = total_requests / limit / 3600
        useful = math.ceil(limit / per_worker_rps)
        limits[limit] = {"hours": hours, "useful_workers": useful}
        print(f"  if the API allowed {limit} requests/s per client: the sync takes at least "
              f"{hours:.1f} h, and workers beyond {useful} add nothing")
    print("  Oxlin publishes no rate limit (docs/oxlin-api §11): a 429 pauses the whole "
          "client (Retry-After), so above the limit more workers only wait")
    return {"requests_per_worker_s": per_worker_rps,
            "transactions_per_worker_s": per_worker_tps,
            "requests_per_user": fixed + pages, "requests_per_s_needed": need_rps,
            "transactions_per_s_needed": need_tps, "workers_needed": needed,
            "workers_by_requests": by_requests, "workers_by_transactions": by_transactions,
            "rate_limits": limits}
