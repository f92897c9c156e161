"""The export's fast path (`BulkRun(models=False)`): pages decoded straight from the wire
into records with the row's attributes, never into models. Its rows must be exactly the
rows of the models, in every format's spelling, whatever the page holds: over the
emulator's population, over arbitrary changes to a transaction, and end to end."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oxlin_async as ox
from oxlin_async import _export, _wire
from oxlin_async._rows import TX_SOURCES, Kind, encoder
from oxlin_async._transport import Response
from oxlin_async.bulk import _ROW_READS, Batch, BulkUser
from oxlin_async.errors import DecodeError
from oxlin_async.models import Account, Transaction
from oxlin_async.testing import OxlinSandbox

pytestmark = pytest.mark.skipif(_wire.msgspec is None, reason="needs the speed extra")

URL = yarl.URL("http://h/v2.1/transactions")
#: every spelling a writer uses: JSON Lines (orjson and json), CSV and SQLite, Parquet
#: and PostgreSQL, and the values as they are
SPELLINGS = {"text": _export._TEXT, "orjson": _export._ORJSON, "arrow": {Kind.ENUM: str},
             "as is": {}}


def response(body: bytes) -> Response:
    return Response(200, {}, body, "GET", URL)


TX = {"id": "1", "account_id": "2", "amount": -79.99, "currency": "EUR", "label": "x",
      "type": "DEBIT", "origin": "ORIGINAL", "status": "BOOKED", "category_id": "PETS",
      "date": 1639954800, "import_date": 1639998109}
ACCOUNT = response(orjson.dumps([{"id": "2", "connection_id": "3", "name": "n",
                                  "type": "CHECKINGS", "status": "ACTIVE", "currency": "EUR",
                                  "balance": 1, "balance_date": 1639998109,
                                  "creation_date": 1639998109}])).decode_list(Account)[0]
#: JSON values of every type, some odd, some bad, some beyond datetime's range
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.text(max_size=5),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.decimals(places=2, allow_nan=False, allow_infinity=False, min_value=-10**9,
                max_value=10**9).map(float),
    st.integers(0, 2**34), st.sampled_from(["CRYPTO", "BOOKED", "PENDING", "1"]),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(-2**40, 2**40), max_size=2),
)
FIELDS = [*TX, "notes", "value_date", "booking_date", "last_update_date",
          "remittance_information", "source", "transaction_date", "check_number",
          "extra_field"]


def rows_of(transactions: list[Any], account: Account, spell: dict[Kind, Any]
            ) -> list[list[Any]]:
    batch = Batch("someone@example.com", account, transactions, "42",
                  {"PETS": "Animaux", "SALARY": "Salaires"})
    return encoder(spell)(batch)


def assert_same_rows(records: list[Any], models: list[Transaction], account: Account) -> None:
    assert len(records) == len(models)
    for record, model in zip(records, models, strict=True):
        for name in _ROW_READS:
            a, b = getattr(record, name), getattr(model, name)
            assert a == b and type(a) is type(b) and repr(a) == repr(b), (name, a, b)
    for name, spell in SPELLINGS.items():
        got, want = rows_of(records, account, spell), rows_of(models, account, spell)
        assert got == want, name
        assert [[type(v) for v in row] for row in got] == \
            [[type(v) for v in row] for row in want], name


def an_account(box: OxlinSandbox, user_id: int) -> Account:
    data = box.state.data(user_id)
    body = orjson.dumps([a.to_json() for a in data.accounts.values()])
    return response(body).decode_list(Account)[0]


def test_the_row_reads_are_the_rows_sources() -> None:
    assert set(TX_SOURCES) <= set(_ROW_READS)
    assert {"id", "import_date"} <= set(_ROW_READS)  # the run's own reads
    assert all(hasattr(Transaction, "__attrs_attrs__") and name in
               {a.name for a in Transaction.__attrs_attrs__} for name in _ROW_READS)


def test_population_pages_give_the_models_rows() -> None:
    box = OxlinSandbox(users=6, seed=9, testbanks=["fr/harry_potter"])
    seen = 0
    for user in box.users:
        data = box.state.data(int(user.id))
        account = an_account(box, int(user.id))
        body = orjson.dumps([t.to_json() for t in data.all_transactions()])
        records = response(body).decode_rows(Transaction, _ROW_READS)
        models = response(body).decode_list(Transaction)
        assert records and not any(isinstance(r, Transaction) for r in records)  # no model
        assert_same_rows(records, models, account)
        seen += len(records)
    assert seen > 500


def test_odd_and_bad_values_fall_back_to_the_models() -> None:
    account = ACCOUNT
    # an odd label (a non-essential field): read tolerantly, as the models do
    body = orjson.dumps([TX, {**TX, "id": "9", "label": 12}])
    records = response(body).decode_rows(Transaction, _ROW_READS)
    assert records[1].label is None
    assert_same_rows(records, response(body).decode_list(Transaction), account)
    # a bad essential field: the same error, naming it
    body = orjson.dumps([TX, {**TX, "amount": "12.50"}])
    with pytest.raises(DecodeError) as caught:
        response(body).decode_rows(Transaction, _ROW_READS)
    assert "$[1]" in str(caught.value) and "amount" in str(caught.value)
    # a timestamp beyond datetime's range fails msgspec's conversion: named too
    with pytest.raises(DecodeError) as caught:
        response(orjson.dumps([{**TX, "import_date": 10**15}])).decode_rows(
            Transaction, _ROW_READS)
    assert "import_date" in str(caught.value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=4), max_size=3))
def test_rows_equal_the_models_rows_whatever_the_page(changes: list[dict[str, Any]]) -> None:
    items = [{**TX, "id": str(i), **change} for i, change in enumerate(changes)]
    for item in items:  # some changes remove a field instead
        for key in [k for k, v in item.items() if v == "1" and k in TX]:
            del item[key]
    body = orjson.dumps(items)
    try:
        models = response(body).decode_list(Transaction)
    except DecodeError as exc:
        with pytest.raises(DecodeError) as caught:
            response(body).decode_rows(Transaction, _ROW_READS)
        assert str(caught.value) == str(exc)
        return
    records = response(body).decode_rows(Transaction, _ROW_READS)
    assert_same_rows(records, models, ACCOUNT)


async def test_a_bulk_run_without_models_delivers_the_same_rows() -> None:
    box = OxlinSandbox(users=5, seed=23, accounts_per_user=2, transactions_per_account=700)
    async with box:
        users = [BulkUser.with_password(u.email, u.password) for u in box.users]
        rows: dict[bool, list[list[Any]]] = {}
        for models in (True, False):
            async with ox.OxlinClient(box.client_id, box.client_secret,
                                      environment=box.environment) as client:
                run = client.bulk_transactions(users, models=models)
                batches = [batch async for batch in run]
            assert run.result is not None and run.result.ok
            assert all(isinstance(t, Transaction) == models
                       for b in batches for t in b.transactions)
            rows[models] = sorted(row for b in batches
                                  for row in encoder(_export._TEXT)(b))
        assert rows[False] == rows[True]
        assert len(rows[True]) == 5 * 2 * 700
