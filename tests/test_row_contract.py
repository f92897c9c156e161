"""The documented export row (`oxlin_async._rows.ROW`): its schemas agree with it, and
every format the command line writes holds every field of it equal to the ground truth
(ids, exact amounts, calendar days, the owning user and connection, category names)."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from collections import Counter
from decimal import Decimal
from pathlib import Path

import jsonschema
import pyarrow as pa
import pytest
from _helpers import assert_rows, in_tmp, population, requests, row_truth, run

import oxlin_async as ox
from oxlin_async._rows import COLUMNS, ROW, Kind, arrow_schema, json_schema
from oxlin_async.bulk import BulkUser
from oxlin_async.testing import OxlinSandbox

README = Path(__file__).resolve().parent.parent / "README.md"
ISSUE_ORDER = ("id", "user", "user_id", "connection_id", "account_id", "account_type", "date",
               "value_date", "booking_date", "amount", "currency", "label", "category_id",
               "category", "type", "status", "origin", "import_date", "last_update_date",
               "notes")
TWO_DECIMALS = re.compile(r"^-?[0-9]+\.[0-9]{2}$")
ARGS = ["export", "--sandbox", "--sandbox-users", "4", "--sandbox-transactions", "40",
        "--sandbox-seed", "31", "--quiet", "--out"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_tmp(tmp_path, monkeypatch)


def want() -> dict[tuple[str, str], dict[str, object]]:
    return row_truth(population(4, 31, transactions=40))


# ------------------------------------------------------------------- the schemas
def test_the_columns_are_the_documented_ones_in_order() -> None:
    assert COLUMNS == ISSUE_ORDER


def test_json_schema_and_arrow_schema_agree_with_row() -> None:
    schema, arrow = json_schema(), arrow_schema()
    assert list(schema["properties"]) == list(COLUMNS) == schema["required"]
    assert arrow.names == list(COLUMNS)
    kinds = {Kind.TEXT: (pa.string(), "string", None),
             Kind.ENUM: (pa.string(), "string", None),
             Kind.DECIMAL: (pa.decimal128(18, 2), "string", None),
             Kind.DAY: (pa.date32(), "string", "date"),
             Kind.INSTANT: (pa.timestamp("us", tz="UTC"), "string", "date-time")}
    for column, field in zip(ROW, arrow, strict=True):
        arrow_type, json_type, json_format = kinds[column.kind]
        prop = schema["properties"][column.name]
        assert field.type == arrow_type, column
        assert field.nullable == column.nullable == isinstance(prop["type"], list), column
        assert (prop["type"][0] if column.nullable else prop["type"]) == json_type
        assert prop.get("format") == json_format, column
    jsonschema.Draft202012Validator.check_schema(schema)


def test_readme_documents_the_row() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Export format"):]
    section = section[: section.index("\n## ", 1)]
    # each column in a table row of its own, in the row's order
    named = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)
    assert named == list(COLUMNS)


# ------------------------------------------------------------------- each format
def test_json_lines_rows_equal_the_truth_and_validate(tmp_path: Path) -> None:
    assert run([*ARGS, "tx.jsonl"]) == 0
    lines = (tmp_path / "tx.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    validator = jsonschema.Draft202012Validator(json_schema(),
                                                format_checker=jsonschema.FormatChecker())
    for record in records:
        validator.validate(record)
        assert list(record) == list(COLUMNS)
        assert TWO_DECIMALS.match(record["amount"]), record["amount"]  # "-289.00"
    assert_rows(records, want())


def test_csv_rows_equal_the_truth(tmp_path: Path) -> None:
    assert run([*ARGS, "tx.csv"]) == 0
    with (tmp_path / "tx.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = list(reader)
    assert all(TWO_DECIMALS.match(r["amount"]) for r in rows)
    assert_rows(rows, want())


def test_sqlite_rows_equal_the_truth_and_sums_are_exact(tmp_path: Path) -> None:
    assert run([*ARGS, "tx.db"]) == 0
    names = ["user_key" if n == "user" else n for n in COLUMNS]
    db = sqlite3.connect(tmp_path / "tx.db")
    try:
        rows = [dict(zip(COLUMNS, r, strict=True))
                for r in db.execute(f"SELECT {', '.join(names)} FROM transactions")]
        (total,) = db.execute("SELECT SUM(amount_minor) FROM transactions").fetchone()
        minor = db.execute("SELECT amount, amount_minor FROM transactions").fetchall()
    finally:
        db.close()
    truth = want()
    assert_rows(rows, truth)
    assert all(TWO_DECIMALS.match(r["amount"]) for r in rows)
    assert Decimal(total).scaleb(-2) == sum(t["amount"] for t in truth.values())  # type: ignore[misc]
    assert all(Decimal(text).scaleb(2) == cents for text, cents in minor)


# ------------------------------------------------------------------- the SDK side
async def test_categories_are_read_once_per_run_and_batches_name_the_user() -> None:
    async with OxlinSandbox(users=5, seed=32, transactions_per_account=10) as box, \
            ox.OxlinClient(box.client_id, box.client_secret,
                           environment=box.environment) as client:
        users = [BulkUser.with_password(u.email, u.password) for u in box.users]
        batches = [b async for b in client.bulk_transactions(users, concurrency=5)]
        assert requests(box, "GET /api/v2.1/categories") == 1
        ids = {u.email: u.id for u in box.users}
        assert batches and all(b.user_id == ids[b.user] for b in batches)
        assert Counter(b.categories["INCOME"] for b in batches) == {"Revenus": len(batches)}
