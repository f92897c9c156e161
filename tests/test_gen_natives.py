"""Values msgspec makes in C (`_gen.Kind.native`): a page's timestamps and amounts are
converted in one call per page, and the models are exactly those of the Python path,
at the edges of every range too."""

from __future__ import annotations

import linecache

import orjson
import pytest

from oxlin_async import _gen, _wire
from oxlin_async._convert import loads, structure_list
from oxlin_async.models import Account, Transaction

pytestmark = pytest.mark.skipif(_wire.msgspec is None, reason="needs the speed extra")

TX = {"id": "1", "account_id": "2", "amount": -79.99, "currency": "EUR", "label": "x",
      "type": "DEBIT", "origin": "ORIGINAL", "status": "BOOKED", "category_id": "PETS",
      "date": 1639954800, "import_date": 1639998109}


def test_timestamps_and_amounts_are_made_once_per_page_in_c() -> None:
    for cls in (Transaction, Account):
        source = "".join(linecache.getlines(_gen.wire_model(cls).filename))
        assert "zip(items, _natives_page(items))" in source, cls
        assert "_epoch" not in source and "_Decimal" not in source, cls
    source = "".join(linecache.getlines(_gen.wire_model(Transaction).filename))
    assert "x.import_date = n.import_date" in source
    assert "x.amount = n.amount" in source


@pytest.mark.parametrize("changes", [
    {"amount": 2**53 + 1}, {"amount": -2**63}, {"amount": 0}, {"amount": -0.0},
    {"amount": 1e22}, {"amount": 1.5e-7}, {"amount": 123456789.12},
    {"amount": 0.30000000000000004}, {"amount": -5},
    {"date": -62135596800}, {"date": 253402300799}, {"import_date": 0},
    {"import_date": -1}, {"value_date": None, "booking_date": 1},
    {"last_update_date": 253402300799, "transaction_date": -62135596800},
])
def test_the_c_path_makes_the_python_paths_models(changes: dict[str, object]) -> None:
    body = orjson.dumps([{**TX, **changes}, TX])
    decoder = _wire.page_decoder(Transaction)
    assert decoder is not None
    fast, slow = decoder(body), structure_list(loads(body), Transaction)
    assert fast == slow
    assert [repr(x) for x in fast] == [repr(x) for x in slow]  # Decimal('12') stays 12
    for a, b in zip(fast, slow, strict=True):
        assert type(a.amount) is type(b.amount) and type(a.date) is type(b.date)
        assert a.date.tzinfo is b.date.tzinfo


@pytest.mark.parametrize("changes", [
    {"date": 253402300800}, {"import_date": -62135596801}, {"date": 10**15},
])
def test_a_timestamp_beyond_the_range_fails_both_paths(changes: dict[str, object]) -> None:
    body = orjson.dumps([{**TX, **changes}])
    decoder = _wire.page_decoder(Transaction)
    assert decoder is not None
    with pytest.raises(ValueError):
        decoder(body)
    with pytest.raises(Exception) as caught:
        structure_list(loads(body), Transaction)
    assert next(iter(changes)) in str(caught.value)


def test_a_row_model_of_an_unknown_field_is_a_programming_error() -> None:
    with pytest.raises(_gen.Unsupported, match="no field 'nope'"):
        _gen.row_model(Transaction, ("id", "nope"))
