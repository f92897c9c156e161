"""Sharded exports (`oxlin_async.shards`, ``export --shards``): separate processes and
``--workers`` equal a single-process export, a deleted part costs only its shard's
users, a failed user leaves no rows and no ``_SUCCESS`` until ``--retry-failed``, and
nothing written or shown holds a secret. One emulator serves every process of a test
(tests/_shards.py); its ground truth is the seeded population."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import (
    assert_exact,
    in_tmp,
    new_client,
    population,
    read_jsonl,
    rows_to_truth,
    run,
    token_pairs,
    truth,
)
from _shards import by_key, cli, finished, manifest_rows, rows_of, shared, signed_in

import oxlin_async as ox
from oxlin_async import shards
from oxlin_async.bulk import BulkUser, token_key
from oxlin_async.testing import Faults, OxlinSandbox


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_tmp(tmp_path, monkeypatch)


USERS = ["--users", "users.csv", "--quiet"]


# ------------------------------------------------------------------------------ the plan
def test_the_shard_of_a_user_is_stable_across_processes_and_covers_every_user() -> None:
    keys = [f"user{i}@example.com" for i in range(200)] + ["token:0123456789abcdef01234567"]
    here = [shards.shard_of(k, 7) for k in keys]
    there = subprocess.run(
        [sys.executable, "-c", "import sys, json; from oxlin_async.shards import shard_of; "
         "print(json.dumps([shard_of(k, 7) for k in json.load(sys.stdin)]))"],
        input=json.dumps(keys), capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert json.loads(there.stdout) == here  # another process, another str hash salt
    assert set(here) == set(range(7))  # 200 users fill 7 shards
    # sha256 of the key, its first 8 bytes big-endian, modulo K: written down in the plan
    assert shards.shard_of("jane@example.com", 64) == int.from_bytes(
        hashlib.sha256(b"jane@example.com").digest()[:8], "big") % 64


def test_the_plan_is_recorded_and_another_plan_needs_another_folder(tmp_path: Path) -> None:
    args = ["export", "--sandbox", "--sandbox-users", "6", "--sandbox-transactions", "5",
            "--since", "2025-01-01", "--statuses", "BOOKED", "--out", "out", "--quiet"]
    assert run([*args, "--shards", "3", "--shard-index", "1"]) == 0
    plan = json.loads((tmp_path / "out" / "_plan.json").read_text())
    assert plan["shards"] == 3 and plan["format"] == "jsonl"
    assert plan["filter"] == {"statuses": "BOOKED", "since": plan["since"]}
    assert plan["users"]["sandbox"]["users"] == 6
    assert shards.load_plan("out").filter == ox.TransactionFilter(
        since=dt.date(2025, 1, 1), statuses=["BOOKED"])
    # only shard 1 ran: its part and report, no commit
    names = sorted(os.listdir("out"))
    assert names == ["_plan.json", "part-00001-of-00003.jsonl",
                     "part-00001-of-00003.report.json"]
    assert run([*args, "--shards", "4", "--shard-index", "1"]) == 2  # another K
    assert run([*args[:-5], "--out", "out", "--quiet", "--shards", "3",
                "--shard-index", "0"]) == 2  # another filter
    assert run([*args, "--shards", "3", "--shard-index", "3"]) == 2  # out of range
    assert run(["commit", "out"]) == 1  # shards 0 and 2 are missing
    assert not (tmp_path / "out" / "_SUCCESS").exists()


# --------------------------------------------------------- processes equal one process
def test_four_shard_processes_and_commit_equal_a_single_process_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = population(40, 61, transactions=20)
    box.faults.update(Faults(latency=0.005))
    with shared(box, tmp_path, monkeypatch):
        assert run(["export", *USERS, "--out", "single.jsonl"]) == 0
        processes = [cli("export", *USERS, "--out", "parts", "--shards", "4",
                         "--shard-index", str(i), cwd=tmp_path) for i in range(4)]
        for process in processes:
            rc, err = finished(process)
            assert rc == 0, err
        assert not (tmp_path / "parts" / "_SUCCESS").exists()  # no shard commits
        assert run(["commit", "parts"]) == 0
    single = rows_of(tmp_path / "single.jsonl")
    sharded = manifest_rows(tmp_path / "parts")
    assert by_key(sharded) == by_key(single)  # every field of every row
    assert_exact(rows_to_truth(sharded), truth(box))
    manifest = json.loads((tmp_path / "parts" / "_manifest.json").read_text())
    assert [p["path"] for p in manifest["parts"]] == [
        f"part-0000{i}-of-00004.jsonl" for i in range(4)]
    assert manifest["users"] == 40 and manifest["rows"] == len(truth(box))
    for part in manifest["parts"]:  # each part holds the users of its shard, only
        users = {r["user"] for r in rows_of(tmp_path / "parts" / part["path"])}
        assert {shards.shard_of(u, 4) for u in users} == {part["shard"]}
    assert not (tmp_path / "parts" / "_temporary").exists()


def test_workers_2_equals_a_single_process_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = population(40, 62, transactions=20)
    with shared(box, tmp_path, monkeypatch) as call:
        assert run(["export", *USERS, "--out", "single.jsonl"]) == 0
        before = signed_in(call, box)
        assert run(["export", *USERS, "--out", "parts", "--workers", "2", "--format", "csv",
                    "--concurrency", "8"]) == 0
        assert signed_in(call, box) - before == before  # every user once more, no more
    single = rows_of(tmp_path / "single.jsonl")
    assert by_key(manifest_rows(tmp_path / "parts")) == by_key(single)
    reports = sorted((tmp_path / "parts").glob("part-*.report.json"))
    assert [p.name for p in reports] == ["part-00000-of-00002.report.json",
                                         "part-00001-of-00002.report.json"]


def test_a_deleted_part_is_fetched_again_and_only_its_shard_s_users(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = population(40, 63, transactions=20)
    args = ["export", *USERS, "--out", "parts", "--shards", "5"]
    with shared(box, tmp_path, monkeypatch) as call:
        assert run(args) == 0
        first = signed_in(call, box)
        assert set(first.values()) == {1}
        lost = ["part-00001-of-00005.jsonl", "part-00003-of-00005.jsonl"]
        for name in lost:
            (tmp_path / "parts" / name).unlink()
        assert run(["commit", "parts"]) == 1  # a reader is told it is incomplete
        assert not (tmp_path / "parts" / "_SUCCESS").exists()
        assert run(args) == 0
        again = signed_in(call, box) - first
    want = {u.email for u in box.users if shards.shard_of(u.email, 5) in (1, 3)}
    assert set(again) == want and set(again.values()) == {1}
    assert_exact(rows_to_truth(manifest_rows(tmp_path / "parts")), truth(box))


# --------------------------------------------------------------------- failed users
def test_a_failed_user_leaves_no_rows_and_no_success_until_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    box = population(12, 64, transactions=20)
    victim = box.users[5].email
    args = ["export", "--users", "users.csv", "--out", "parts", "--shards", "3"]
    with shared(box, tmp_path, monkeypatch, {victim: "not-the-password"}) as call:
        assert run(args) == 1
        err = capsys.readouterr().err
        assert f"failed: {victim}" in err and "--retry-failed" in err
        assert not (tmp_path / "parts" / "_SUCCESS").exists()
        assert not (tmp_path / "parts" / "_manifest.json").exists()
        index = shards.shard_of(victim, 3)
        stem = f"part-{index:05d}-of-00003"
        rows = read_jsonl(tmp_path / "parts" / f"{stem}.jsonl")
        assert victim not in {user for user, _ in rows}
        report = json.loads((tmp_path / "parts" / f"{stem}.report.json").read_text())
        (failed,) = [r for r in report["results"] if r["status"] == "failed"]
        assert failed["user"] == victim and failed["error_type"] == "InvalidGrantError"
        assert "not-the-password" not in (tmp_path / "parts" / f"{stem}.report.json"
                                          ).read_text()
        assert run(["commit", "parts"]) == 1
        assert "1 users failed" in capsys.readouterr().err
        assert run(args) == 1  # without --retry-failed: complete parts are skipped

        (tmp_path / "users.csv").write_text("".join(
            f"{u.email},{u.password}\n" for u in box.users))  # the password is fixed
        before = signed_in(call, box)
        assert run([*args, "--retry-failed", "--quiet"]) == 0
        assert signed_in(call, box) - before == {victim: 1}  # that user, no other
        retry = tmp_path / "parts" / f"{stem}-retry1.jsonl"
        assert {user for user, _ in read_jsonl(retry)} == {victim}
        assert_exact(rows_to_truth(manifest_rows(tmp_path / "parts")), truth(box))

        # the main part lost: its shard runs again in full, and its retry part goes
        (tmp_path / "parts" / f"{stem}.jsonl").unlink()
        assert run(["commit", "parts"]) == 1
        assert run([*args, "--quiet"]) == 0
    assert not retry.exists()
    assert_exact(rows_to_truth(manifest_rows(tmp_path / "parts")), truth(box))


async def test_a_user_failing_mid_walk_leaves_none_of_its_pages(tmp_path: Path) -> None:
    """Python API: 429s and 5xx with no retries fail users between their pages; every
    page of a failed user is dropped, every done user is exact."""
    # ~12 % of the users fail after a page of theirs was delivered: among 80, some do
    box = OxlinSandbox(users=80, seed=65, accounts_per_user=3, transactions_per_account=40,
                       faults=Faults.uniform(0.1, seed=3, retry_after=0))
    users = [BulkUser.with_password(u.email, u.password) for u in box.users]
    shards.prepare(str(tmp_path / "parts"), shards.ShardPlan(2))
    async with box, new_client(box, retry=ox.RetryPolicy.disabled()) as client:
        results = [await shards.export_shard(client, users, str(tmp_path / "parts"), i,
                                             per_user_concurrency=1) for i in range(2)]
    failed = {k for r in results for k in r.failed}
    reports = [json.loads(p.read_text()) for p in (tmp_path / "parts").glob("*.report.json")]
    by_user = {u["user"]: u for r in reports for u in r["results"]}
    assert failed and any(by_user[k]["pages"] > 0 for k in failed), by_user  # mid-walk
    got = {}
    for i in range(2):
        got.update(read_jsonl(tmp_path / "parts" / f"part-0000{i}-of-00002.jsonl"))
    assert not {user for user, _ in got} & failed
    assert_exact(got, truth(box, only=set(by_user) - failed))
    assert sum(r.rows for r in results) == len(got)
    with pytest.raises(shards.ShardError, match="users failed"):
        shards.commit(str(tmp_path / "parts"))
    manifest = shards.commit(str(tmp_path / "parts"), allow_failed=True)
    assert sorted(manifest["failed"]) == sorted(failed)


def test_token_users_keep_their_rotated_pairs_in_a_store_per_shard(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 20 users: token keys hash random tokens, and 6 all fell in one shard once in ~30 runs
    box = population(20, 70, transactions=10)
    with shared(box, tmp_path, monkeypatch) as call:
        pairs = token_pairs(box)
        (tmp_path / "users.csv").write_text("".join(f"{a},{r}\n" for a, r in pairs.values()))
        keys = {email: token_key(*pair) for email, pair in pairs.items()}
        args = ["export", *USERS, "--out", "parts", "--shards", "2"]
        for _ in range(2):  # the second run starts from the pairs the first one rotated
            call(lambda: box.state.expire_tokens())  # each user must refresh: a new pair
            assert run(args) == 0
            for part in (tmp_path / "parts").glob("part-*"):
                part.unlink()  # fetched again next time
    stores = sorted(p.name for p in tmp_path.glob("users.csv.tokens*"))
    assert {shards.shard_of(k, 2) for k in keys.values()} == {0, 1}  # both shards have users
    assert stores == [f"users.csv.tokens-part-0000{i}-of-00002.json" for i in range(2)]
    for i in range(2):
        kept = json.loads((tmp_path / stores[i]).read_text())["tokens"]
        assert set(kept) == {k for k in keys.values() if shards.shard_of(k, 2) == i}
        assert not {p["refresh_token"] for p in kept.values()} & {r for _, r in pairs.values()}


# ------------------------------------------------------------------ formats, sinks
@pytest.mark.parametrize("fmt", ["parquet", "csv", "sqlite"])
def test_parts_in_other_formats(tmp_path: Path, fmt: str) -> None:
    assert run(["export", "--sandbox", "--sandbox-users", "10", "--sandbox-transactions", "15",
                "--sandbox-seed", "66", "--out", "parts", "--shards", "3", "--format", fmt,
                "--quiet"]) == 0
    want = truth(population(10, 66, transactions=15))
    if fmt == "sqlite":
        import sqlite3

        got = {}
        for name in shards.part_paths("parts"):
            with sqlite3.connect(name) as db:
                got.update(rows_to_truth(
                    {"user": u, "id": i, "account_id": a, "amount": m} for u, i, a, m in
                    db.execute("SELECT user_key, id, account_id, amount FROM transactions")))
        assert_exact(got, want)
        return
    assert_exact(rows_to_truth(manifest_rows(tmp_path / "parts")), want)


def test_postgresql_shards_upsert_directly(
        tmp_path: Path, pg_server: object, pg_database: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from _postgres import Server

    assert isinstance(pg_server, Server)
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    url = pg_server.url(pg_database, password=False)
    box = ["export", "--sandbox", "--sandbox-users", "8", "--sandbox-transactions", "15",
           "--sandbox-seed", "67", "--shards", "2", "--quiet"]
    args = [*box, "--out", url]
    for index in ("0", "1", "1"):  # the second run of shard 1 is skipped
        assert run([*args, "--shard-index", index]) == 0
    assert run(["commit", f"postgresql-{pg_database}.shards"]) == 0
    with pg_server.connect(pg_database) as db:
        got = rows_to_truth({"user": u, "id": i, "account_id": a, "amount": m} for u, i, a, m
                            in db.execute("SELECT user_key, id, account_id, amount "
                                          "FROM transactions"))
    assert_exact(got, truth(population(8, 67, transactions=15)))
    plan = (tmp_path / f"postgresql-{pg_database}.shards" / "_plan.json").read_text()
    assert pg_server.password not in plan
    # a password in the URL would be written in the plan: refused, before any request
    assert run([*box, "--out", pg_server.url(pg_database), "--shard-index", "0",
                "--shard-dir", "other"]) == 2


async def test_a_shard_starting_while_another_removes_the_emptied_temporary_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shard that finishes removes `_temporary` once empty; another shard's process may
    be between creating `_temporary` and its own folder in it (seen in CI as a failed
    shard, FileNotFoundError). Played here at that exact point, three times over."""
    box = OxlinSandbox(users=6, seed=69, accounts_per_user=2, transactions_per_account=10)
    users = [BulkUser.with_password(u.email, u.password) for u in box.users]
    where = tmp_path / "parts"
    shards.prepare(str(where), shards.ShardPlan(2))
    real_mkdir = os.mkdir
    races = []

    def mkdir(path: str | os.PathLike[str], mode: int = 0o777) -> None:
        parent = os.path.dirname(os.fspath(path))
        if os.path.basename(parent) == shards.TEMPORARY and len(races) < 3:
            races.append(path)
            os.rmdir(parent)  # what the other shard's clean-up does
        real_mkdir(path, mode)

    monkeypatch.setattr(os, "mkdir", mkdir)
    async with box, new_client(box) as client:
        results = [await shards.export_shard(client, users, str(where), i) for i in range(2)]
    assert len(races) == 3  # the first shard met the race three times and went on
    assert not any(r.failed for r in results)
    shards.commit(str(where))
    got = {}
    for name in shards.part_paths(str(where)):
        got.update(read_jsonl(Path(name)))
    assert_exact(got, truth(box))


async def test_a_url_destination_goes_through_fsspec(tmp_path: Path) -> None:
    import fsspec

    box = OxlinSandbox(users=6, seed=68, accounts_per_user=2, transactions_per_account=10)
    users = [BulkUser.with_password(u.email, u.password) for u in box.users]
    where = "memory://oxlin-test/parts"
    shards.prepare(where, shards.ShardPlan(2))
    async with box, new_client(box) as client:
        for i in range(2):
            await shards.export_shard(client, users, where, i)
    shards.commit(where)
    fs = fsspec.filesystem("memory")
    got = {}
    for name in shards.part_paths(where):
        path = tmp_path / name.rsplit("/", 1)[-1]
        path.write_bytes(fs.cat_file(name))
        got.update(read_jsonl(path))
    assert_exact(got, truth(box))
    assert fs.exists("/oxlin-test/parts/_SUCCESS")


def test_a_url_of_an_unknown_protocol_is_refused_before_any_request(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["export", "--sandbox", "--sandbox-users", "2", "--out", "nosuchproto://b/tx",
                "--shards", "2", "--shard-index", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot write to nosuchproto://b/tx" in err and "Traceback" not in err


# ------------------------------------------------------------------------- secrets
def test_no_secret_in_the_spec_the_plan_the_reports_or_the_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = population(6, 69, transactions=5)
    with shared(box, tmp_path, monkeypatch):
        assert run(["export", *USERS, "--out", "parts", "--shards", "2"]) == 0
    secrets = [box.client_secret, *(u.password for u in box.users)]
    spec = shards.ShardSpec(str(tmp_path / "parts"), 1)
    written = "".join(p.read_text() for p in (tmp_path / "parts").iterdir()
                      if p.suffix == ".json") + repr(spec) + repr(shards.load_plan("parts"))
    assert "_manifest.json" in os.listdir(tmp_path / "parts")
    for secret in secrets:
        assert secret not in written
    assert "users.csv" in written  # where the users come from, not who they are


def test_a_destination_url_with_a_password_is_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["export", "--sandbox", "--sandbox-users", "2", "--out",
                "ftp://me:pa55-word@example.com/tx", "--shards", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds a password" in err and "pa55-word" not in err


def test_the_bar_counts_shards_and_users() -> None:
    from oxlin_async._shards_cli import _Bar

    bar = _Bar(4, enabled=False)
    bar.update(shards.ShardProgress(0, 10, 3, 1, 120))
    bar.update(shards.ShardProgress(1, 12, 0, 0, 0))
    assert bar.text() == "0/4 shards, 4/22+ users, 120 tx, 1 failed"
    bar.shard(shards.ShardResult(0, 4, "p", 300, 10, ("a", "b")))
    for i in (1, 2, 3):
        bar.shard(shards.ShardResult(i, 4, "p", 100, 5, ()))
    assert bar.text() == "4/4 shards, 25/25 users, 600 tx, 2 failed"


def test_a_worker_without_credentials_says_so(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("a@example.com,pw\n")
    shards.prepare("parts", shards.ShardPlan(
        2, users={"file": str(tmp_path / "users.csv")}, hosts={"env": "production"}))
    with pytest.raises(shards.ShardError, match="OXLIN_CLIENT_ID and OXLIN_CLIENT_SECRET"):
        shards.run_shard("parts", 0)
    with pytest.raises(shards.ShardError, match="out of range"):
        shards.run_shard(shards.ShardSpec("parts", 2))
