"""The JSON Lines writer's orjson path writes the same JSON as its stdlib path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import oxlin_async._export as export
from oxlin_async._convert import structure
from oxlin_async.models import Transaction

BASE = {"id": "1", "account_id": "2", "currency": "EUR", "type": "DEBIT", "origin": "ORIGINAL",
        "status": "BOOKED", "category_id": "P", "date": 1639954800, "import_date": 1639998109}
ITEMS = [
    {**BASE, "amount": -79.99, "label": 'Télé "x"', "notes": "a\nb", "value_date": 1639954800},
    {**BASE, "id": "3", "amount": 1200, "label": "whole", "status": "NOT_YET_KNOWN"},
    {**BASE, "id": "4", "amount": 1234567890123.45, "label": "big", "booking_date": 0},
]


def lines(path: Path, writer_cls: type[export.JsonLinesWriter]) -> list[object]:
    writer = writer_cls(str(path), resume_offset=None)
    writer.write("jane@example.com", None, [structure(i, Transaction) for i in ITEMS])  # type: ignore[arg-type]
    writer.finish()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.skipif(export.orjson is None, reason="needs the speed extra")
def test_orjson_and_stdlib_paths_write_the_same_records(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fast = lines(tmp_path / "fast.jsonl", export.JsonLinesWriter)
    monkeypatch.setattr(export, "orjson", None)
    slow = lines(tmp_path / "slow.jsonl", export.JsonLinesWriter)
    assert fast == slow
    assert [r["amount"] for r in fast] == [-79.99, 1200, 1234567890123.45]  # type: ignore[index]
    assert fast[0]["day"] == "2021-12-20"  # type: ignore[index]  # the Paris date
    assert fast[1]["status"] == "NOT_YET_KNOWN"  # type: ignore[index]
