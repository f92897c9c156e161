"""Sharded exports on Dask distributed (`oxlin_async.dask`, ``export --dask``): a
`LocalCluster` of 2 worker processes against one emulator with latency and injected
faults, compared with the ground truth; a shard whose worker dies mid-run runs again and
the result is still exact; the task graph holds no secret."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed
import pytest
from _helpers import assert_exact, in_tmp, population, rows_to_truth, run, truth
from _shards import manifest_rows, shared, signed_in

from oxlin_async import dask as oxdask
from oxlin_async import shards
from oxlin_async.testing import Faults


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_tmp(tmp_path, monkeypatch)


@pytest.fixture
def cluster() -> Iterator[Any]:
    """Started inside the test, after `shared` set the environment its workers inherit.
    The dashboard on a free port: `dashboard_address=None` still tries 8787, and where
    that port is taken (another cluster on the machine) leaks a socket."""
    def start() -> Any:
        return distributed.LocalCluster(n_workers=2, threads_per_worker=2,
                                        dashboard_address="127.0.0.1:0", processes=True)
    made: list[Any] = []

    def factory() -> Any:
        made.append(start())
        return made[-1]

    yield factory
    for c in made:
        c.close()


def _plan(folder: Path, shards_: int) -> str:
    out = str(folder / "parts")
    shards.prepare(out, shards.ShardPlan(shards_, users={"file": str(folder / "users.csv")}))
    return out


def test_local_cluster_export_of_200_users_is_exact_under_latency_and_faults(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: Any) -> None:
    box = population(200, 71, transactions=20)
    box.faults.update(Faults.uniform(0.05, seed=71, latency=0.005, retry_after=0))
    with shared(box, tmp_path, monkeypatch) as call:
        with cluster() as c, distributed.Client(c) as client:
            out = _plan(tmp_path, 8)
            seen: list[shards.ShardProgress] = []
            result = oxdask.export(out, client=client, concurrency=16, max_retries=10,
                                   on_progress=seen.append)
            # 4 threads run 4 shards at once: each holds a quarter of the budget
            assert {s.concurrency for s in oxdask.tasks(out, running=4, concurrency=16)} \
                == {4}
        faults = call(lambda: sum(box.state.counters.faults.values()))
    assert faults > 20  # the faults were there, and retried
    assert result.manifest is not None and not result.failed
    got = rows_to_truth(manifest_rows(tmp_path / "parts"))
    assert_exact(got, truth(box))
    assert len(got) == 200 * 3 * 20
    assert {p.index for p in seen if p.finished} == set(range(8))  # the bar saw every shard


def test_a_shard_whose_worker_dies_runs_again_and_the_result_is_exact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: Any) -> None:
    box = population(80, 72, transactions=20)
    box.faults.update(Faults(latency=0.02))
    with shared(box, tmp_path, monkeypatch) as call:
        with cluster() as c, distributed.Client(c) as client:
            out = _plan(tmp_path, 4)
            outcome: dict[str, Any] = {}
            started = threading.Event()
            progress: list[shards.ShardProgress] = []

            def on_progress(p: shards.ShardProgress) -> None:
                progress.append(p)
                if p.users_done >= 2 and not p.finished:
                    started.set()

            def export() -> None:
                try:
                    outcome["run"] = oxdask.export(out, client=client, concurrency=4,
                                                   on_progress=on_progress)
                except BaseException as exc:
                    outcome["error"] = exc

            thread = threading.Thread(target=export)
            thread.start()
            assert started.wait(60), progress
            victim = next(p.index for p in progress if p.users_done >= 2)
            key = next(k for keys in client.processing().values() for k in keys
                       if f"oxlin-shard-{victim:05d}-" in str(k))
            where = next(w for w, keys in client.processing().items() if key in keys)
            pid = client.run(os.getpid, workers=[where])[where]
            os.kill(pid, signal.SIGKILL)  # the machine is gone, mid-shard
            thread.join(120)
            assert "error" not in outcome, outcome
        twice = signed_in(call, box)
    run_ = outcome["run"]
    assert run_.manifest is not None
    assert_exact(rows_to_truth(manifest_rows(tmp_path / "parts")), truth(box))
    # the victim's users were fetched once more by the second attempt; others once
    again = {k for k, n in twice.items() if n > 1}
    assert again and {shards.shard_of(k, 4) for k in again} >= {victim}
    assert not (tmp_path / "parts" / "_temporary").exists()  # the dead attempt's files


def test_the_task_graph_holds_no_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: Any) -> None:
    box = population(20, 73, transactions=5)
    box.faults.update(Faults(latency=0.02))
    secrets = [box.client_secret, *(u.password for u in box.users)]
    with shared(box, tmp_path, monkeypatch), cluster() as c, distributed.Client(c) as client:
        out = _plan(tmp_path, 4)
        graphs: list[bytes] = []

        def on_progress(_: shards.ShardProgress) -> None:
            if not graphs:  # while the tasks are on the scheduler
                graphs.extend(client.run_on_scheduler(_run_specs))

        result = oxdask.export(out, client=client, on_progress=on_progress)
    assert graphs and all(b"ShardSpec" in g for g in graphs)
    for graph in graphs:
        for secret in secrets:
            assert secret.encode() not in graph
    assert repr(oxdask.tasks(out, running=4)[0]).startswith("ShardSpec(directory=")
    assert result.manifest is not None


def _run_specs(dask_scheduler: Any) -> list[bytes]:
    from distributed.protocol.pickle import dumps

    return [dumps(ts.run_spec) for key, ts in dask_scheduler.tasks.items()
            if "oxlin-shard" in str(key)]


def test_the_command_line_submits_to_a_scheduler_and_commits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    box = population(30, 74, transactions=10)
    with shared(box, tmp_path, monkeypatch), cluster() as c:
        assert run(["export", "--users", "users.csv", "--out", "parts", "--shards", "3",
                    "--dask", c.scheduler_address]) == 0  # --concurrency auto, the default
    assert_exact(rows_to_truth(manifest_rows(tmp_path / "parts")), truth(box))
    plan = json.loads((tmp_path / "parts" / "_plan.json").read_text())
    assert plan["hosts"]["api_url"] == str(box.api_url) and plan["shards"] == 3
    # each task adapted on its own; the summary and the manifest add up their requests
    manifest = json.loads((tmp_path / "parts" / "_manifest.json").read_text())
    reports = [json.loads(p.read_text())
               for p in sorted((tmp_path / "parts").glob("part-*.report.json"))]
    assert {r["concurrency"]["mode"] for r in reports} == {"auto"}
    attempts = sum(r["concurrency"]["attempts"] for r in reports)
    assert manifest["concurrency"]["attempts"] == attempts > 0
    assert f"answered 429: 0 of {attempts:,} across 3 shards" in capsys.readouterr().err
