"""``--format parquet``: the Arrow schema of the row contract, every field equal to the
ground truth read back with pyarrow and with duckdb, row groups and parts of bounded
size, and a run killed (SIGKILL) then resumed holding every transaction exactly once."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from _helpers import assert_rows, in_tmp, lines_of, population, row_truth, run, stop_export_when

from oxlin_async import _parquet
from oxlin_async._rows import arrow_schema


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_tmp(tmp_path, monkeypatch)


def by_pyarrow(path: Path) -> list[dict[str, Any]]:
    table = pq.read_table(path)
    assert table.schema.equals(arrow_schema()), table.schema  # types and nullability
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def by_duckdb(pattern: str) -> list[dict[str, Any]]:
    with duckdb.connect() as con:
        cursor = con.execute(f"SELECT * FROM read_parquet('{pattern}')")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


ARGS = ["export", "--sandbox", "--sandbox-users", "5", "--sandbox-transactions", "60",
        "--sandbox-seed", "41", "--quiet"]


def test_one_file_read_back_with_pyarrow_and_duckdb(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_parquet, "ROW_GROUP", 100)  # several row groups, each bounded
    assert run([*ARGS, "--out", "tx.parquet"]) == 0
    want = row_truth(population(5, 41, transactions=60))
    assert_rows(by_pyarrow(tmp_path / "tx.parquet"), want)
    assert_rows(by_duckdb("tx.parquet"), want)
    meta = pq.ParquetFile(tmp_path / "tx.parquet").metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert len(sizes) > 1 and max(sizes) <= 100 and sum(sizes) == len(want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tx.parquet",
                                                          "tx.parquet.report.json"]
    with duckdb.connect() as con:  # decimal all the way: an exact sum
        (total,) = con.execute("SELECT SUM(amount) FROM 'tx.parquet'").fetchone()  # type: ignore[misc]
    assert total == sum(r["amount"] for r in want.values())


def test_a_folder_of_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_parquet, "ROW_GROUP", 100)
    monkeypatch.setattr(_parquet, "PART_ROWS", 300)
    assert run([*ARGS, "--out", "parts/"]) == 0  # the trailing slash: a folder
    want = row_truth(population(5, 41, transactions=60))
    parts = sorted((tmp_path / "parts").iterdir())
    assert len(parts) == -(-len(want) // 300) and all(p.suffix == ".parquet" for p in parts)
    assert all(pq.ParquetFile(p).metadata.num_rows <= 300 for p in parts)
    assert_rows([row for p in parts for row in by_pyarrow(p)], want)
    assert_rows(by_duckdb("parts/*.parquet"), want)


def test_an_empty_export_is_a_file_with_the_schema(tmp_path: Path) -> None:
    assert run([*ARGS, "--min-amount", "1000000000", "--out", "none.parquet"]) == 0
    assert by_pyarrow(tmp_path / "none.parquet") == []


def test_killed_then_resumed(tmp_path: Path) -> None:
    args = ["export", "--sandbox", "--sandbox-users", "30", "--sandbox-seed", "43",
            "--sandbox-latency-ms", "30", "--concurrency", "2", "--checkpoint", "CP",
            "--out", "tx.parquet", "--quiet"]
    status, _ = stop_export_when(args, tmp_path, lambda: lines_of(tmp_path / "CP") >= 6)
    assert status == -signal.SIGKILL
    assert not (tmp_path / "tx.parquet").exists() and (tmp_path / "tx.parquet.part").exists()

    assert run([*args, "--resume", "--concurrency", "16"]) == 0
    assert not (tmp_path / "tx.parquet.part").exists()
    want = row_truth(population(30, 43))
    assert_rows(by_pyarrow(tmp_path / "tx.parquet"), want)
    assert_rows(by_duckdb("tx.parquet"), want)
    report = json.loads((tmp_path / "tx.parquet.report.json").read_text())
    assert sum(r["accounts_skipped"] for r in report["results"]) + sum(
        r["status"] == "skipped" for r in report["results"]) > 0  # it did resume


def test_resume_from_any_checkpoint_line_with_interleaved_pages(tmp_path: Path) -> None:
    """As for JSON Lines (test_cli): the state a SIGKILL just after checkpoint line K
    leaves is the stream up to that line's offset, some torn bytes after it, and a torn
    checkpoint line; pages of unfinished accounts before the offset are not kept."""
    args = ["export", "--sandbox", "--sandbox-users", "4", "--sandbox-seed", "44",
            "--sandbox-transactions", "1100", "--concurrency", "1", "--checkpoint", "CP",
            "--out", "tx.parquet", "--quiet"]
    want = row_truth(population(4, 44, transactions=1100))
    # a run whose stream is kept: stop it at the end, before the stream becomes Parquet
    full_part = tmp_path / "full.part"
    original = _parquet.ParquetWriter.finish

    def keep_stream(self: _parquet.ParquetWriter) -> None:
        self._file.flush()
        full_part.write_bytes(Path(self.part).read_bytes())
        original(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_parquet.ParquetWriter, "finish", keep_stream)
        assert run(args) == 0
    assert_rows(by_pyarrow(tmp_path / "tx.parquet"), want)
    full, lines = full_part.read_bytes(), (tmp_path / "CP").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    accounts = [k for k, e in enumerate(entries, 1) if "account" in e]
    assert len(accounts) == 12
    for k in (accounts[1], accounts[5], accounts[10]):
        offset = entries[k - 1]["extra"]["offset"]
        (tmp_path / "tx.parquet.part").write_bytes(full[:offset] + full[offset:][:100])
        (tmp_path / "tx.parquet").unlink(missing_ok=True)
        (tmp_path / "CP").write_text("\n".join(lines[:k]) + '\n{"user": "us')
        assert run([*args, "--resume"]) == 0
        assert_rows(by_pyarrow(tmp_path / "tx.parquet"), want)


def test_row_groups_are_written_as_pages_arrive(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory holds at most one row group: the others are in the file before the end."""
    from oxlin_async._convert import structure
    from oxlin_async.bulk import Batch
    from oxlin_async.models import Account, Transaction

    monkeypatch.setattr(_parquet, "ROW_GROUP", 50)
    account = structure({"id": "2", "connection_id": "9", "name": "C", "type": "SAVINGS",
                         "status": "ACTIVE", "currency": "EUR", "balance": 1,
                         "balance_date": 0, "creation_date": 0}, Account)
    writer = _parquet.ParquetWriter(str(tmp_path / "tx.parquet"), resume_offset=None)
    for page in range(10):
        writer.write(Batch("jane@example.com", account, [structure(
            {"id": f"{page}-{i}", "account_id": "2", "currency": "EUR", "type": "DEBIT",
             "origin": "ORIGINAL", "status": "BOOKED", "category_id": "P", "date": 0,
             "import_date": 0, "amount": -1.5, "label": "x"}, Transaction)
            for i in range(30)], "7", {}))
        assert writer._pending_rows < 50  # the rest went out as row groups
    assert (tmp_path / "tx.parquet.tmp").stat().st_size > 0  # already written
    writer.commit()
    writer.finish()
    meta = pq.ParquetFile(tmp_path / "tx.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [50] * 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tx.parquet"]
