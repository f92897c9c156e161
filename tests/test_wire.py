"""The msgspec fast path decodes exactly what the converter decodes, and refuses
whatever it refuses (then the converter's error is what the caller sees)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oxlin_async import _wire
from oxlin_async._convert import loads, structure_list
from oxlin_async._transport import Response
from oxlin_async.errors import DecodeError
from oxlin_async.models import Account, Category, Connection, Transaction, User
from oxlin_async.testing import OxlinSandbox

pytestmark = pytest.mark.skipif(_wire.msgspec is None, reason="needs the speed extra")


def both(cls: type[Any], body: bytes) -> tuple[Any, Any]:
    """(fast result or the exception type, slow result or the exception type)."""
    decoder = _wire.page_decoder(cls)
    assert decoder is not None
    try:
        fast: Any = decoder(body)
    except Exception as exc:  # any failure hands over to the slow path
        fast = type(exc)
    try:
        slow: Any = structure_list(loads(body), cls)
    except DecodeError as exc:
        slow = type(exc)
    return fast, slow


def same(fast: list[Any], slow: list[Any]) -> None:
    assert fast == slow
    assert [repr(x) for x in fast] == [repr(x) for x in slow]  # Decimal('12') stays 12
    assert all(type(x) is type(y) for x, y in zip(fast, slow, strict=True))


def test_emulator_pages_decode_identically() -> None:
    box = OxlinSandbox(users=4, seed=5, testbanks=["fr/harry_potter"])
    for user in box.users:
        data = box.state.data(int(user.id))
        pages = {
            Transaction: [t.to_json() for t in data.all_transactions()],
            Account: [a.to_json() for a in data.accounts.values()],
            Connection: [c.to_json() for c in data.connections.values()],
        }
        for cls, items in pages.items():
            fast, slow = both(cls, orjson.dumps(items))
            same(fast, slow)
    users = [u.to_json() for u in box.state.users.values()]
    same(*both(User, orjson.dumps(users)))


TX = {"id": "1", "account_id": "2", "amount": -79.99, "currency": "EUR", "label": "x",
      "type": "DEBIT", "origin": "ORIGINAL", "status": "BOOKED", "category_id": "PETS",
      "date": 1639954800, "import_date": 1639998109}
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.text(max_size=5),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.decimals(places=2, allow_nan=False, allow_infinity=False, min_value=-10**9,
                max_value=10**9).map(float),
    st.lists(st.text(max_size=3), max_size=2), st.sampled_from(["CRYPTO", "BOOKED", "1"]),
    st.dictionaries(st.text(max_size=3), st.integers(-2**40, 2**40), max_size=2),
)
FIELDS = [*TX, "notes", "value_date", "remittance_information", "source", "extra_field"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=4), max_size=3))
def test_fast_path_never_accepts_what_the_converter_refuses(changes: list[dict[str, Any]]
                                                            ) -> None:
    items = [{**TX, **change} for change in changes]
    for item in items:  # some changes remove a field instead
        for key in [k for k, v in item.items() if v == "1" and k in TX]:
            del item[key]
    fast, slow = both(Transaction, orjson.dumps(items))
    if isinstance(slow, type):
        assert isinstance(fast, type), f"fast path accepted what the converter refuses: {items}"
    elif not isinstance(fast, type):
        same(fast, slow)


def test_exact_amounts_and_unknown_enums() -> None:
    body = b'[{"id":"1","account_id":"2","amount":1234567.89,"currency":"EUR","label":"x",' \
           b'"type":"CRYPTO_SWAP","origin":"ORIGINAL","status":"FROZEN","category_id":"P",' \
           b'"date":1639954800,"import_date":1639998109,"surprise":{"a":1}}]'
    decoder = _wire.page_decoder(Transaction)
    assert decoder is not None
    (tx,) = decoder(body)
    assert tx.amount == Decimal("1234567.89") and str(tx.amount) == "1234567.89"
    assert tx.type == "CRYPTO_SWAP" and type(tx.type) is str
    assert tx.status == "FROZEN"


def test_a_string_amount_is_refused_by_both_paths() -> None:
    body = orjson.dumps([{**TX, "amount": "12.50"}])
    fast, slow = both(Transaction, body)
    assert isinstance(fast, type) and slow is DecodeError


def test_response_falls_back_to_the_converter_for_its_error_message() -> None:
    import yarl

    body = orjson.dumps([TX, {**TX, "date": "yesterday"}])
    response = Response(200, {"X-Request-ID": "r1"}, body, "GET",
                        yarl.URL("http://h/v2.1/transactions"))
    with pytest.raises(DecodeError) as caught:
        response.decode_list(Transaction)
    assert "$[1]" in str(caught.value) and "date" in str(caught.value)
    assert caught.value.request_id == "r1"


def test_without_msgspec_the_converter_does_the_work(monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    import yarl

    monkeypatch.setattr(_wire, "msgspec", None)
    monkeypatch.setattr(_wire, "_DECODERS", {})
    assert _wire.page_decoder(Category) is None
    body = b'[{"id":"PETS","label":"Animaux","type":"EXPENSE"}]'
    response = Response(200, {}, body, "GET", yarl.URL("http://h/v2.1/categories"))
    assert response.decode_list(Category)[0].id == "PETS"
