"""A sharded export on a Dask distributed cluster (the ``dask`` extra: ``pip install
"oxlin-async[dask]"``).

    from oxlin_async import dask as oxdask, shards
    shards.prepare("s3://bucket/tx/2026-12-03/", shards.ShardPlan(
        shards=64, format="parquet", users={"file": "/secrets/users.csv"},
        hosts={"env": "production"}))
    run = oxdask.export("s3://bucket/tx/2026-12-03/", address="tcp://scheduler:8786")

Each shard is one task, ``oxlin_async.shards.run_shard`` given a `ShardSpec` (the
directory, the index, the concurrency: no secret), submitted with `retries`; a worker
reads the client credentials from its own environment (``OXLIN_CLIENT_ID``,
``OXLIN_CLIENT_SECRET``) and the users from the plan's source, so no secret goes through
the scheduler. `concurrency` "auto" (the default): each shard adapts its requests in
flight to what the API takes, on its own, up to the client's bound (64); shards sharing
one API limit converge to fair shares of it without talking. A number is a budget
divided among the shards that run at once (the cluster's threads), so the API sees at
most `concurrency` requests in flight. Once every task is over, the export is committed
(`oxlin_async.shards.commit`).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from ._adaptive import Concurrency, check_concurrency
from .shards import (
    ShardedRun,
    ShardError,
    ShardProgress,
    ShardResult,
    ShardSpec,
    _finish,
    absolute,
    divide,
    load_plan,
    run_shard,
)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ShardError("a Dask export needs dask.distributed: "
                         "pip install 'oxlin-async[dask]'") from None
    return distributed


def shard_task(spec: ShardSpec, progress: str | None = None) -> ShardResult:
    """One shard, as a Dask task runs it; its progress goes to the Dask queue `progress`
    (a name), read by the client that submitted it."""
    if progress is None:
        return run_shard(spec)
    queue = _distributed().Queue(progress)

    def report(p: ShardProgress) -> None:
        with contextlib.suppress(Exception):  # a progress bar is no reason to fail a shard
            queue.put(attrs.astuple(p), timeout=5)

    return run_shard(spec, on_progress=report)


def tasks(directory: str, *, running: int, concurrency: Concurrency = "auto",
          per_user_concurrency: int = 4, max_retries: int | None = None,
          retry_failed: bool = False) -> list[ShardSpec]:
    """The tasks' arguments: one `ShardSpec` per shard, each with its share of the
    concurrency (`running` shards at once; "auto": each adapts on its own)."""
    check_concurrency(concurrency)
    directory = absolute(directory)
    plan = load_plan(directory)
    share = divide(concurrency, min(running, plan.shards))
    return [ShardSpec(directory, i, share, per_user_concurrency, max_retries, retry_failed)
            for i in range(plan.shards)]


def export(directory: str, *, address: str | None = None, client: Any = None,
           concurrency: Concurrency = "auto", per_user_concurrency: int = 4,
           max_retries: int | None = None, retries: int = 3, retry_failed: bool = False,
           commit: bool = True, allow_failed: bool = False,
           on_progress: Callable[[ShardProgress], None] | None = None,
           on_shard: Callable[[ShardResult], None] | None = None) -> ShardedRun:
    """Run every shard of the plan in `directory` (see `oxlin_async.shards.prepare`) on
    the Dask cluster of `client` (a ``distributed.Client``) or of the scheduler at
    `address`; a task that raises, or whose worker dies, runs again (`retries`). Then
    commit, unless `commit` is false or a user failed (and not `allow_failed`). A shard
    that still fails raises `ShardError` naming it, after the others are over."""
    check_concurrency(concurrency)
    distributed = _distributed()
    own = client is None
    if own:
        client = distributed.Client(address) if address is not None else distributed.Client()
    try:
        running = max(1, sum(client.nthreads().values()))
        specs = tasks(directory, running=running, concurrency=concurrency,
                      per_user_concurrency=per_user_concurrency, max_retries=max_retries,
                      retry_failed=retry_failed)
        token = uuid.uuid4().hex[:12]
        queue_name = f"oxlin-progress-{token}" if on_progress is not None else None
        queue = distributed.Queue(queue_name, client=client) if queue_name else None
        futures = [client.submit(shard_task, spec, queue_name, retries=retries, pure=False,
                                 key=f"oxlin-shard-{spec.index:05d}-{token}")
                   for spec in specs]
        results: list[ShardResult] = []
        errors: list[str] = []
        pending = set(futures)
        while pending:
            done = [f for f in pending if f.done()]
            if not done:
                time.sleep(0.1)
            _drain(queue, on_progress)
            for future in done:
                pending.discard(future)
                if future.status == "error":
                    error = future.exception()
                    errors.append(f"shard {future.key}: {type(error).__name__}: {error}")
                    continue
                results.append(future.result())
                if on_shard is not None:
                    on_shard(results[-1])
        _drain(queue, on_progress)
        if queue is not None:
            queue.close()
    finally:
        if own:
            client.close()
    if errors:
        raise ShardError(f"{len(errors)} shards failed after {retries} retries: {errors[0]}")
    return _finish(directory, results, commit, allow_failed)


def _drain(queue: Any, on_progress: Callable[[ShardProgress], None] | None) -> None:
    if queue is None or on_progress is None:
        return
    try:
        items = queue.get(batch=True)
    except Exception:  # the bar misses a beat; the shards go on
        return
    for item in items:
        on_progress(ShardProgress(*item))


__all__ = ["export", "shard_task", "tasks"]
