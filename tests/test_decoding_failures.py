"""What does not decode, and why: wrong shapes name the model, item and field; bad JSON;
the two decoding paths refuse exactly the same payloads (no network)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs
import pytest
from _payloads import (
    ACCOUNT,
    CATEGORY,
    CHANNEL_EMBEDDED,
    CHANNEL_REDIRECT,
    CONNECTION,
    MODELS,
    TRANSACTION,
    USER,
    Decoder,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from oxlin_async import _convert
from oxlin_async._convert import loads, structure, structure_list
from oxlin_async.errors import (
    DecodeError,
    OxlinError,
)
from oxlin_async.models import (
    Account,
    Category,
    Connection,
    Owner,
    Transaction,
    User,
)

# -- wrong shapes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "payload", "field"),
    [(cls, payload, field) for cls, payload, fields in MODELS for field in fields],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_missing_required_field(cls: type[Any], payload: dict[str, Any], field: str) -> None:
    broken = {k: v for k, v in payload.items() if k != field}
    with pytest.raises(DecodeError) as one:
        structure(broken, cls)
    assert cls.__name__ in str(one.value) and f"$.{field}" in str(one.value)
    assert "missing" in str(one.value)
    with pytest.raises(DecodeError) as page:
        structure_list([payload, payload, broken], cls)
    assert cls.__name__ in str(page.value) and f"$[2].{field}" in str(page.value)


def test_a_nested_model_missing_an_essential_field_leaves_out_its_tolerant_field() -> None:
    # `channels` is not essential (docs/oxlin-api §15): a channel without its id costs the
    # channels, not the connection, nor the page.
    broken = {**CONNECTION, "channels": [CHANNEL_REDIRECT, {**CHANNEL_EMBEDDED}]}
    del broken["channels"][1]["channel_definition_id"]
    whole = structure(CONNECTION, Connection)
    assert structure(broken, Connection) == attrs.evolve(whole, channels=())
    assert structure_list([CONNECTION, broken], Connection) == [
        whole, attrs.evolve(whole, channels=())]


@pytest.mark.parametrize(
    ("cls", "payload", "field", "value"),
    [
        (Transaction, TRANSACTION, "id", 2433482741),
        (Transaction, TRANSACTION, "amount", "-79.99"),
        (Transaction, TRANSACTION, "amount", True),
        (Transaction, TRANSACTION, "amount", None),
        (Transaction, TRANSACTION, "date", 1639954800.0),
        (Transaction, TRANSACTION, "date", "1639954800"),
        (Transaction, TRANSACTION, "date", True),
        (Transaction, TRANSACTION, "type", 3),
        (Transaction, TRANSACTION, "type", ["DEBIT"]),
        (Transaction, TRANSACTION, "status", None),
        (Transaction, TRANSACTION, "value_date", "yesterday"),
        (Account, ACCOUNT, "balance", {"value": 1}),
        (Connection, CONNECTION, "status", 1),
    ],
)
def test_wrong_types_raise_decode_error(
    decode: Decoder, cls: type[Any], payload: dict[str, Any], field: str, value: Any
) -> None:
    with pytest.raises(DecodeError) as raised:
        decode({**payload, field: value}, cls)
    assert cls.__name__ in str(raised.value)
    assert field in str(raised.value)


# Values these tests refused before the fields were read tolerantly (docs/oxlin-api §15):
# now the field is left out (its default), or kept where it is an opaque JSON value.
@pytest.mark.parametrize(
    ("cls", "payload", "field", "value", "expected"),
    [
        (Transaction, TRANSACTION, "label", None, None),
        (Transaction, TRANSACTION, "notes", 5, None),
        (Transaction, TRANSACTION, "remittance_information", "France Télécom", ()),
        (Transaction, TRANSACTION, "remittance_information", [1], ()),
        (Transaction, TRANSACTION, "source", "CARTE", None),
        (Account, ACCOUNT, "usage", 1, None),
        (Account, ACCOUNT, "loan", [], []),
        (Account, ACCOUNT, "owner", {"name": None}, "Owner()"),
        (Connection, CONNECTION, "auto_sync", "true", None),
        (Connection, CONNECTION, "auto_sync", 1, None),
        (Connection, CONNECTION, "channels", {"0": CHANNEL_EMBEDDED}, ()),
        (Connection, CONNECTION, "channels", [[]], ()),
        (Connection, CONNECTION, "constraints", "none", None),
        (User, USER, "email_verified", "yes", None),
        (User, USER, "address", "84300", None),
        (Category, CATEGORY, "parent", {"id": 5}, None),
    ],
)
def test_odd_values_of_non_essential_fields_are_left_out(
    decode: Decoder, cls: type[Any], payload: dict[str, Any], field: str, value: Any,
    expected: Any,
) -> None:
    whole = decode(payload, cls)
    got = decode({**payload, field: value}, cls)
    if expected == "Owner()":
        expected = Owner()
    assert got == attrs.evolve(whole, **{field: expected})


@pytest.mark.parametrize("item", [None, 1, "x", [], [TRANSACTION]])
def test_items_that_are_not_objects(item: Any) -> None:
    with pytest.raises(DecodeError, match=r"expected an object.*@ \$"):
        structure(item, Transaction)
    with pytest.raises(DecodeError, match=r"expected an object.*@ \$\[1\]"):
        structure_list([TRANSACTION, item], Transaction)


@pytest.mark.parametrize("data", [None, {}, TRANSACTION, "[]", 3])
def test_a_page_must_be_an_array(data: Any) -> None:
    with pytest.raises(DecodeError, match="expected an array"):
        structure_list(data, Transaction)


def test_empty_page() -> None:
    assert structure_list([], Transaction) == []


def test_non_finite_numbers_are_rejected() -> None:
    for value in (float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity")):
        with pytest.raises(DecodeError, match="amount"):
            structure({**TRANSACTION, "amount": value}, Transaction)
        with pytest.raises(DecodeError, match="amount"):
            structure_list([{**TRANSACTION, "amount": value}], Transaction)


def test_decode_errors_are_not_bare_exceptions() -> None:
    for bad in ({}, {"id": 1}, [1], None):
        with pytest.raises(DecodeError) as raised:
            structure(bad, Transaction)
        assert isinstance(raised.value, OxlinError)
        with pytest.raises(DecodeError) as raised:
            structure_list([bad], Transaction)
        assert raised.value.__cause__ is None
        assert raised.value.__context__ is None or raised.value.__suppress_context__


# -- JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize("without_orjson", [False, True])
def test_loads(monkeypatch: pytest.MonkeyPatch, without_orjson: bool) -> None:
    if without_orjson:
        monkeypatch.setattr(_convert, "orjson", None)
    data = loads(b'[{"a": -79.99, "b": 3, "c": "\xc3\xa9"}]')
    assert data[0]["b"] == 3 and data[0]["c"] == "é"
    assert type(data[0]["a"]) is (Decimal if without_orjson else float)
    tx = structure(loads(json.dumps(TRANSACTION).encode()), Transaction)
    assert tx.amount == Decimal("-79.99")


@pytest.mark.parametrize("without_orjson", [False, True])
@pytest.mark.parametrize(
    "body",
    [b"", b"<html>502 Bad Gateway</html>", b'{"a": ', b'{"a": NaN}', b'[Infinity]',
     b"\xff\xfe"],
)
def test_loads_rejects_what_is_not_json(
    monkeypatch: pytest.MonkeyPatch, without_orjson: bool, body: bytes
) -> None:
    if without_orjson:
        monkeypatch.setattr(_convert, "orjson", None)
    with pytest.raises(DecodeError, match="invalid JSON") as raised:
        loads(body)
    assert raised.value.excerpt is not None and len(raised.value.excerpt) <= 200


# -- both decoding paths agree ---------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(MODELS[:-1]),
    st.data(),
)
def test_one_and_page_paths_agree(model: tuple[type[Any], dict[str, Any], list[str]],
                                  data: st.DataObject) -> None:
    cls, payload, _ = model
    broken = copy.deepcopy(payload)
    for _ in range(data.draw(st.integers(1, 2))):
        target = data.draw(st.sampled_from(list(_objects(broken))))
        key = data.draw(st.sampled_from(sorted(target) or ["new"]))
        if data.draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = data.draw(_json_values)
    # the diagnostic converter, which explains failures, must fail exactly when the
    # fast one does
    assert _fails(_convert.converter.structure, broken, cls) == _fails(
        _convert._diagnostic.structure, broken, cls
    )
    try:
        one = structure(broken, cls)
    except DecodeError as exc:
        assert cls.__name__ in str(exc) and "@ $" in str(exc)
        with pytest.raises(DecodeError, match=r"@ \$\[1\]"):
            structure_list([payload, broken], cls)
    else:
        assert structure_list([payload, broken], cls)[1] == one
        for a in attrs.fields(cls):
            value = getattr(one, a.name)
            if a.type in ("str", str):
                assert type(value) is str


def _objects(value: Any) -> Any:
    """Every JSON object in ``value``, nested ones included."""
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _objects(v)
    elif isinstance(value, list):
        for v in value:
            yield from _objects(v)


def _fails(decode: Callable[[Any, type[Any]], Any], obj: Any, cls: type[Any]) -> bool:
    try:
        decode(obj, cls)
    except _convert._FAILURES:
        return True
    return False
