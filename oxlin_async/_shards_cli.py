"""The command line of sharded exports (`oxlin_async.shards`): ``export --shards K
--shard-index I`` (one shard, for any orchestrator), ``--workers N`` (local processes),
``--dask ADDRESS`` (a Dask cluster), and ``oxlin-async commit DIR``. `cli` calls in
here through three hooks; the inputs are checked by its own functions."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from ._adaptive import ConcurrencyStats
from ._argtypes import count, positive
from ._postgres import is_url, redact
from .shards import (
    ShardedRun,
    ShardError,
    ShardPlan,
    ShardProgress,
    ShardResult,
    ShardSpec,
    absolute,
    commit,
    prepare,
    run_local,
    run_shard,
)


def add_shard_arguments(export: argparse.ArgumentParser) -> None:
    group = export.add_argument_group(
        "scale out", "Split the export into K shards by a stable hash of each user's key: "
                     "--out is then a folder of parts (part-0000I-of-0000K.EXT, each with "
                     "its report) committed with _manifest.json and _SUCCESS, or a "
                     "postgresql:// URL each shard upserts into.")
    group.add_argument("--shards", type=positive, metavar="K",
                       help="the number of shards (recorded in OUT/_plan.json; a different "
                            "K needs a new folder; default with --workers: N)")
    group.add_argument("--shard-index", type=count, metavar="I",
                       help="run shard I (0 to K-1) only, and do not commit: for a "
                            "Kubernetes indexed Job, mapped Airflow tasks, a shell loop")
    group.add_argument("--workers", type=positive, metavar="N",
                       help="run every shard in N local processes, then commit; "
                            "--concurrency auto: each adapts on its own (up to 64); "
                            "--concurrency N: N shared among them")
    group.add_argument("--dask", metavar="ADDRESS",
                       help="run every shard as a task on the Dask scheduler at ADDRESS "
                            "(tcp://host:8786; the dask extra), retried when it fails, then "
                            "commit; each worker needs OXLIN_CLIENT_ID/SECRET in its "
                            "environment")
    group.add_argument("--retry-failed", action="store_true",
                       help="fetch the users an earlier run left failed into additional "
                            "parts (complete parts are always skipped)")
    group.add_argument("--task-retries", type=int, default=3, metavar="N",
                       help="with --dask: runs of a failed shard task (default 3)")
    group.add_argument("--shard-dir", metavar="DIR",
                       help="where the plan, the reports and the manifest go when --out is "
                            "a postgresql:// URL (default: postgresql-DB.shards here)")


def add_commit_command(commands: Any) -> None:
    parser = commands.add_parser(
        "commit", help="commit a sharded export: _manifest.json, then _SUCCESS",
        description="Check that every shard of the export in DIR has a complete part and "
                    "no user is left failed, then write DIR/_manifest.json (every part and "
                    "its row count) and DIR/_SUCCESS, last. Exit status 1 when it cannot.")
    parser.add_argument("directory", metavar="DIR")
    parser.add_argument("--allow-failed", action="store_true",
                        help="commit even if some users failed (the manifest lists them)")
    parser.set_defaults(handler=commit_command)


def wants_shards(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) is not None
               for name in ("shards", "shard_index", "workers", "dask"))


# ---------------------------------------------------------------------------- export
def _hosts(args: argparse.Namespace) -> dict[str, str]:
    names = ("auth_url", "api_url", "embed_url")
    urls = [getattr(args, n) or os.environ.get(f"OXLIN_{n.upper()}", "") for n in names]
    if any(urls):
        return dict(zip(names, urls, strict=True))
    return {"env": str(args.env or os.environ.get("OXLIN_ENV"))}


def _plan(args: argparse.Namespace) -> tuple[str, ShardPlan]:
    """The folder and the plan, every input checked (exit 2 before any request)."""
    from .cli import InputError, _credentials, _environment, _filter, read_users

    if args.shard_index is not None and (args.workers or args.dask):
        raise InputError("--shard-index runs one shard here: not with --workers or --dask")
    if args.workers and args.dask:
        raise InputError("--workers (local processes) or --dask (a cluster), not both")
    if (args.shard_index is not None or args.dask) and args.shards is None:
        raise InputError("say how many shards: --shards K")
    if args.checkpoint or args.resume:
        raise InputError("sharded exports need no --checkpoint or --resume: run the same "
                         "command again, complete parts are skipped")
    shards = args.shards or args.workers or 1
    if args.shard_index is not None and args.shard_index >= shards:
        raise InputError(f"--shard-index {args.shard_index} is out of range: shards are "
                         f"0 to {shards - 1}")
    credentials = _credentials(args)
    hosts: dict[str, str] = {}
    if credentials is not None:
        _environment(args)
        hosts = _hosts(args)
    users: dict[str, Any] = {}
    if args.users:
        read_users(args.users)  # a bad file fails here, once, not in every shard
        users["file"] = os.path.abspath(args.users)
    if credentials is None:
        users["sandbox"] = {
            "users": args.sandbox_users, "seed": args.sandbox_seed,
            "accounts": args.sandbox_accounts, "transactions": args.sandbox_transactions,
            "latency_ms": args.sandbox_latency_ms, "fault_rate": args.sandbox_fault_rate,
            "retry_after": args.sandbox_retry_after,
            "rate_limit": args.sandbox_rate_limit}
    fmt = args.format or ("postgresql" if is_url(args.out) else "jsonl")
    if is_url(args.out):
        database = redact(args.out).rsplit("/", 1)[-1] or "postgresql"
        directory = args.shard_dir or f"postgresql-{database}.shards"
    else:
        directory = args.out
    directory = absolute(directory)  # as the workers see it, whatever their folder
    try:
        plan = ShardPlan(shards=shards, format=fmt, filter=_filter(args), users=users,
                         hosts=hosts, output=args.out if fmt == "postgresql" else None)
        return directory, prepare(directory, plan)
    except ShardError as exc:
        raise InputError(str(exc)) from None


def shard_command(args: argparse.Namespace) -> int:
    directory, plan = _plan(args)
    bar = _Bar(plan.shards, sys.stderr.isatty() and not args.quiet)
    started = time.monotonic()
    options: dict[str, Any] = {"per_user_concurrency": args.per_user_concurrency,
                               "max_retries": args.max_retries,
                               "retry_failed": args.retry_failed}
    with bar:
        if args.shard_index is not None:
            result = run_shard(ShardSpec(directory, args.shard_index, args.concurrency,
                                         **options), on_progress=bar.update)
            return _one(args, result, time.monotonic() - started)
        if args.dask:
            from . import dask as oxdask

            run = oxdask.export(directory, address=args.dask, concurrency=args.concurrency,
                                retries=args.task_retries, on_progress=bar.update,
                                on_shard=bar.shard, **options)
        elif args.workers:
            run = run_local(directory, workers=args.workers, concurrency=args.concurrency,
                            on_progress=bar.update, on_shard=bar.shard, **options)
        else:  # --shards K alone: one shard after the other, here
            results = []
            for index in range(plan.shards):
                results.append(run_shard(ShardSpec(directory, index, args.concurrency,
                                                   **options), on_progress=bar.update))
                bar.shard(results[-1])
            failed = any(r.failed for r in results)
            run = ShardedRun(tuple(results), None if failed else commit(directory))
    return _all(args, directory, run, time.monotonic() - started)


def _one(args: argparse.Namespace, result: ShardResult, elapsed: float) -> int:
    if not args.quiet:
        what = (f"shard {result.index} of {result.shards}: " + (
            f"complete already ({result.part or 'upserted'}), skipped" if result.skipped
            else f"exported {result.rows:,} transactions of "
                 f"{result.users - len(result.failed)}/{result.users} users to "
                 f"{result.part or 'the database'} in {elapsed:.1f}s"))
        print(what, file=sys.stderr)
        if result.concurrency is not None and result.concurrency.attempts:
            print(concurrency_line(result.concurrency), file=sys.stderr)
        _failures(result.failed)
    return 1 if result.failed else 0


def _all(args: argparse.Namespace, directory: str, run: ShardedRun, elapsed: float) -> int:
    if not args.quiet:
        users = sum(r.users for r in run.results)
        print(f"exported {run.rows:,} transactions in {len(run.results)} shards "
              f"({sum(r.skipped for r in run.results)} complete already) of {users} users "
              f"to {directory} in {elapsed:.1f}s", file=sys.stderr)
        ran = [r.concurrency for r in run.results if r.concurrency is not None]
        if run.attempts:
            auto = [c for c in ran if c.mode == "auto"]
            shown = (f"{sum(c.mean for c in auto) / len(auto):.1f} on average per shard, "
                     f"{max(c.peak for c in auto)} at most" if auto
                     else f"{ran[0].limit} per shard, fixed")
            print(f"  requests in flight: {shown}; answered 429: {run.throttled:,} of "
                  f"{run.attempts:,} across {len(ran)} shards ({run.throttle_rate:.1%})",
                  file=sys.stderr)
        _failures(run.failed)
        print(f"committed: {directory}/_manifest.json" if run.manifest is not None else
              "not committed: run the same command again with --retry-failed, or "
              f"'oxlin-async commit {directory} --allow-failed'", file=sys.stderr)
    return 0 if run.manifest is not None else 1


def concurrency_line(c: ConcurrencyStats) -> str:
    """The summary's line on one run's requests in flight and 429s (README: "auto")."""
    shown = (f"{c.limit} at the end, {c.mean:.1f} on average, {c.peak} at most"
             if c.mode == "auto" else f"{c.limit}, fixed")
    return (f"  requests in flight: {shown}; answered 429: {c.throttled:,} of "
            f"{c.attempts:,} ({c.throttle_rate:.1%})")


def _failures(failed: tuple[str, ...]) -> None:
    for key in failed[:20]:
        print(f"  failed: {key} (see the part's report)", file=sys.stderr)
    if len(failed) > 20:
        print(f"  ... and {len(failed) - 20} more", file=sys.stderr)


def commit_command(args: argparse.Namespace) -> int:
    manifest = commit(args.directory, allow_failed=args.allow_failed)
    print(f"committed {args.directory}: {len(manifest['parts'])} parts, "
          f"{manifest['rows']:,} transactions of {manifest['users']} users"
          + (f", {len(manifest['failed'])} failed" if manifest["failed"] else ""),
          file=sys.stderr)
    return 0


# ------------------------------------------------------------------------ progress bar
class _Bar:
    """Shards done of K, users done of those the running shards hold, transactions; on
    stderr when it is a terminal (rich, the cli extra)."""

    def __init__(self, shards: int, enabled: bool) -> None:
        self.shards = shards
        self._latest: dict[int, ShardProgress] = {}
        self._done = 0
        self._bar: Any = None
        self._task: Any = None
        if not enabled:
            return
        try:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar
        except ImportError:
            return
        self._bar = Bar(BarColumn(bar_width=10), TextColumn("{task.fields[text]}"),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=True)

    def __enter__(self) -> _Bar:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("shards", total=self.shards, text="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, p: ShardProgress) -> None:
        self._latest[p.index] = p
        self._show()

    def shard(self, result: ShardResult) -> None:
        self._done += 1
        c = result.concurrency
        self._latest[result.index] = ShardProgress(
            result.index, result.users, result.users - len(result.failed), len(result.failed),
            result.rows, True, c.attempts if c else 0, c.throttled if c else 0,
            c.limit if c else 0)
        self._show()

    def text(self) -> str:
        seen = self._latest.values()
        done = sum(p.users_done + p.users_failed for p in seen)
        failed = sum(p.users_failed for p in seen)
        total = sum(p.users_total for p in seen)
        more = "+" if len(self._latest) < self.shards else ""
        # once the API answers 429: their share of all attempts, and the requests the
        # running shards allow in flight together
        throttled = sum(p.throttled for p in seen)
        requests = sum(p.requests for p in seen)
        limit = sum(p.limit for p in seen if not p.finished)
        return (f"{self._done}/{self.shards} shards, {done}/{total}{more} users, "
                f"{sum(p.transactions for p in seen):,} tx"
                + (f", 429 {throttled / requests:.1%} @{limit}" if throttled else "")
                + (f", {failed} failed" if failed else ""))

    def _show(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self._done, text=self.text())
