"""The concurrency of sharded exports: ``"auto"`` (the default) lets each shard adapt on
its own, a number stays a budget divided among the shards that run at once; each
shard's report, the manifest and the summary of ``--workers`` say how it went (limits,
attempts, 429s). The rate-limited runs are in test_ratelimit_bulk.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _helpers import assert_exact, in_tmp, population, rows_to_truth, run, truth
from _shards import manifest_rows, shared

import oxlin_async as ox
from oxlin_async import dask as oxdask
from oxlin_async import shards


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_tmp(tmp_path, monkeypatch)


def _reports(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("part-*.report.json"))]


def test_auto_stays_auto_and_a_number_is_divided(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("a@example.com,pw\n")
    shards.prepare("parts", shards.ShardPlan(4, users={"file": str(tmp_path / "users.csv")}))
    assert shards.divide("auto", 4) == "auto"
    assert shards.divide(32, 4) == 8 and shards.divide(3, 4) == 1
    assert shards.ShardSpec("parts", 0).concurrency == "auto"  # the default, as for bulk
    assert {s.concurrency for s in oxdask.tasks("parts", running=2)} == {"auto"}
    assert {s.concurrency for s in oxdask.tasks("parts", running=2, concurrency=10)} == {5}


@pytest.mark.parametrize("bad", ["many", 0, -1, 2.5, True, None])
def test_a_bad_concurrency_is_an_argument_error_everywhere(tmp_path: Path, bad: Any) -> None:
    (tmp_path / "users.csv").write_text("a@example.com,pw\n")
    shards.prepare("parts", shards.ShardPlan(2, users={"file": str(tmp_path / "users.csv")}))
    calls = [lambda: shards.ShardSpec("parts", 0, bad),
             lambda: shards.divide(bad, 2),
             lambda: shards.run_local("parts", workers=2, concurrency=bad),
             lambda: oxdask.tasks("parts", running=2, concurrency=bad),
             lambda: oxdask.export("parts", address="tcp://127.0.0.1:1", concurrency=bad)]
    for call in calls:
        with pytest.raises(ox.ArgumentError, match=r"'concurrency'.*'auto' or an int >= 1"):
            call()
    assert not list(tmp_path.glob("parts/part-*"))  # refused before any work


def test_workers_with_auto_report_each_shard_s_concurrency_and_the_sums(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    box = population(30, 81, transactions=10)
    with shared(box, tmp_path, monkeypatch):
        assert run(["export", "--users", "users.csv", "--out", "parts",
                    "--workers", "2", "--shards", "3"]) == 0  # --concurrency auto, the default
    assert_exact(rows_to_truth(manifest_rows(tmp_path / "parts")), truth(box))
    reports = _reports(tmp_path / "parts")
    assert len(reports) == 3
    for report in reports:
        c = report["concurrency"]
        assert c["mode"] == "auto"
        assert 1 <= c["limit"] <= c["peak"] <= 64  # the client's bound, each on its own
        assert c["attempts"] == sum(u["requests"] for u in report["results"]) > 0
        assert c["throttled"] == 0 and c["throttle_rate"] == 0.0  # no limit here
    manifest = json.loads((tmp_path / "parts" / "_manifest.json").read_text())
    attempts = sum(r["concurrency"]["attempts"] for r in reports)
    assert manifest["concurrency"] == {"attempts": attempts, "throttled": 0,
                                       "throttle_rate": 0.0}
    assert [p["attempts"] for p in manifest["parts"]] == [
        r["concurrency"]["attempts"] for r in reports]
    err = capsys.readouterr().err
    assert f"answered 429: 0 of {attempts:,} across 3 shards (0.0%)" in err, err


def test_a_pinned_concurrency_is_divided_among_the_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    box = population(12, 82, transactions=5)
    with shared(box, tmp_path, monkeypatch):
        assert run(["export", "--users", "users.csv", "--out", "parts", "--workers", "2",
                    "--concurrency", "6"]) == 0
    assert_exact(rows_to_truth(manifest_rows(tmp_path / "parts")), truth(box))
    for report in _reports(tmp_path / "parts"):
        c = report["concurrency"]
        assert (c["mode"], c["limit"], c["peak"]) == ("fixed", 3, 3)  # 6 / 2 running
    assert "3 per shard, fixed" in capsys.readouterr().err


def test_one_shard_says_how_its_concurrency_went(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    box = population(6, 83, transactions=5)
    with shared(box, tmp_path, monkeypatch):
        assert run(["export", "--users", "users.csv", "--out", "parts", "--shards", "2",
                    "--shard-index", "1"]) == 0
        # a skipped shard did no requests: no figures, and nothing to say about them
        assert run(["export", "--users", "users.csv", "--out", "parts", "--shards", "2",
                    "--shard-index", "1"]) == 0
        result = shards.run_shard(shards.ShardSpec(str(tmp_path / "parts"), 1))
    first, again = capsys.readouterr().err.split("shard 1 of 2: complete already")
    (report,) = _reports(tmp_path / "parts")
    c = report["concurrency"]
    assert f"answered 429: 0 of {c['attempts']:,} (0.0%)" in first
    assert "on average" in first and "answered 429" not in again
    assert result.skipped and result.concurrency is None


def test_the_bar_shows_the_429_share_and_the_running_shards_limits() -> None:
    from oxlin_async._shards_cli import _Bar

    bar = _Bar(3, enabled=False)
    bar.update(shards.ShardProgress(0, 10, 3, 0, 120, requests=100, limit=7))
    assert bar.text() == "0/3 shards, 3/10+ users, 120 tx"  # no 429 yet: nothing to say
    bar.update(shards.ShardProgress(1, 12, 2, 0, 80, requests=200, throttled=6, limit=5))
    assert bar.text() == "0/3 shards, 5/22+ users, 200 tx, 429 2.0% @12"
    stats = ox.ConcurrencyStats(mode="auto", limit=9, peak=20, mean=8.5, attempts=300,
                                throttled=6)
    bar.shard(shards.ShardResult(1, 3, "p", 100, 12, (), concurrency=stats))
    # shard 1 is over: its attempts still count, its limit no longer holds requests
    assert bar.text() == "1/3 shards, 15/22+ users, 220 tx, 429 1.5% @7"


def test_the_sandbox_s_rate_limit_reaches_each_shard_s_emulator(tmp_path: Path) -> None:
    assert run(["export", "--sandbox", "--sandbox-users", "6", "--sandbox-accounts", "1",
                "--sandbox-transactions", "5", "--sandbox-rate-limit", "100,1",
                "--max-retries", "10", "--out", "parts", "--shards", "2", "--shard-index",
                "0", "--quiet"]) == 0
    plan = json.loads((tmp_path / "parts" / "_plan.json").read_text())
    assert plan["users"]["sandbox"]["rate_limit"] == "100,1"
    (report,) = _reports(tmp_path / "parts")
    assert report["failed"] == 0
    assert report["concurrency"]["throttled"] > 0  # a bucket of 1 met a few users at once
