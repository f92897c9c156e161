"""The tolerant reader (docs/oxlin-api §15): essential fields are checked strictly, every
other field never fails a page, the same on both decoding paths, over real HTTP too."""

from __future__ import annotations

import copy
import datetime as dt
import logging
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import orjson
import pytest
import yarl
from _helpers import assert_exact, client_of, delivered, drain, new_client, truth, users_of
from _payloads import ACCOUNT, CATEGORY, CONNECTION, TRANSACTION, USER
from aiohttp import web
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_emulator_cli import _password_grant, emulator

import oxlin_async as ox
from oxlin_async import _convert, _gen, _wire
from oxlin_async._convert import structure_list
from oxlin_async._transport import Response
from oxlin_async.errors import DecodeError
from oxlin_async.models import (
    Account,
    Category,
    Connection,
    Owner,
    Transaction,
    TransactionSource,
    User,
)
from oxlin_async.testing import Faults, OxlinSandbox

#: The essential fields, as the README lists them.
ESSENTIAL = {
    User: {"id", "email", "creation_date"},
    Connection: {"id", "user_id", "provider_id", "status", "creation_date"},
    Account: {"id", "connection_id", "type", "status", "currency", "balance",
              "balance_date", "creation_date", "last_channel_definition_id"},
    Transaction: {"id", "account_id", "amount", "currency", "type", "status", "category_id",
                  "date", "import_date", "value_date", "booking_date", "last_update_date"},
    Category: {"id"},
}
PAYLOADS: dict[type[Any], dict[str, Any]] = {
    User: USER, Connection: CONNECTION, Account: ACCOUNT, Transaction: TRANSACTION,
    Category: CATEGORY,
}


def _essential(cls: type[Any]) -> set[str]:
    return {a.name for a in attrs.fields(cls) if not a.metadata.get(_gen.TOLERANT)}


def test_the_essential_fields_are_those_the_readme_lists() -> None:
    for cls, names in ESSENTIAL.items():
        assert _essential(cls) == names
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for cls, names in ESSENTIAL.items():
        line = next(x.strip() for x in readme.splitlines()
                    if x.strip().startswith(f"| `{cls.__name__}` |"))
        assert {n.strip(" `") for n in line.split("|")[2].split(",")} == names


# -- the three ways a page is decoded -------------------------------------------------------

Way = Callable[[bytes, type[Any]], list[Any]]


def _msgspec(body: bytes, cls: type[Any]) -> list[Any]:
    decoder = _wire.page_decoder(cls)
    assert decoder is not None
    return decoder(body)


WAYS: dict[str, Way] = {
    "msgspec": _msgspec,
    "orjson": lambda body, cls: structure_list(orjson.loads(body), cls),
    "stdlib": lambda body, cls: structure_list(_convert._loads_stdlib(body), cls),
}


def _floats(value: Any) -> Any:
    """The stdlib path reads fractions as Decimal (kept as such in opaque values)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_floats(v) for v in value]
    if attrs.has(type(value)):
        return _comparable(value)
    return value


def _comparable(obj: Any) -> Any:
    return {a.name: _floats(getattr(obj, a.name)) for a in attrs.fields(type(obj))}


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                         max_size=3)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    _containers, max_leaves=6,
)


def _tolerant_paths() -> Iterator[tuple[type[Any], tuple[str, ...]]]:
    """(model, path) of every non-essential field, nested ones included (one level down
    an object or the first item of an array, as the payloads have them)."""
    for cls, payload in PAYLOADS.items():
        for a in attrs.fields(cls):
            if a.metadata.get(_gen.TOLERANT):
                yield cls, (a.name,)
            value = payload.get(a.name)
            inner = value[0] if isinstance(value, list) and value else value
            if isinstance(inner, dict):
                for key in inner:
                    yield cls, (a.name, "0", key) if isinstance(value, list) else (a.name, key)


TOLERANT_PATHS = sorted(set(_tolerant_paths()), key=lambda p: (p[0].__name__, p[1]))


def _put(payload: dict[str, Any], path: tuple[str, ...], value: Any, *, remove: bool) -> None:
    target: Any = payload
    for key in path[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if remove:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TOLERANT_PATHS), _json, st.booleans())
def test_any_json_in_a_non_essential_field_never_fails_a_page(
        where: tuple[type[Any], tuple[str, ...]], value: Any, remove: bool) -> None:
    cls, path = where
    # A nested path (say owner.name) counts only when the field holding it is tolerant.
    assume(len(path) == 1 or attrs.fields_dict(cls)[path[0]].metadata.get(_gen.TOLERANT))
    payload = PAYLOADS[cls]
    odd = copy.deepcopy(payload)
    _put(odd, path, value, remove=remove)
    body = orjson.dumps([payload, odd, payload])
    (whole,) = structure_list([payload], cls)
    results = {}
    for name, way in WAYS.items():
        first, got, last = way(body, cls)
        # the other items are untouched, and so are this item's essential fields
        assert first == whole and last == whole, name
        for field in _essential(cls):
            assert getattr(got, field) == getattr(whole, field), (name, field)
        results[name] = _comparable(got)
    assert results["msgspec"] == results["orjson"] == results["stdlib"]


def _accepts(a: attrs.Attribute[Any], value: Any) -> bool:
    """Whether essential field ``a`` takes ``value`` (the reference's JSON types)."""
    t, optional = _gen.split_optional(a.type)
    optional = optional or a.default is not attrs.NOTHING
    if value is None:
        return optional
    if t is Decimal:
        return type(value) in (int, float)
    if t is dt.datetime:
        if type(value) is not int:
            return False
        try:
            dt.datetime.fromtimestamp(value, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return False
        return True
    return type(value) is str  # ids, currencies, enums


ESSENTIAL_FIELDS = sorted(((cls, a.name) for cls in PAYLOADS for a in attrs.fields(cls)
                           if not a.metadata.get(_gen.TOLERANT)),
                          key=lambda p: (p[0].__name__, p[1]))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ESSENTIAL_FIELDS), _json, st.booleans())
def test_a_wrong_or_missing_essential_field_is_a_decode_error_naming_it(
        where: tuple[type[Any], str], value: Any, remove: bool) -> None:
    cls, field = where
    a = attrs.fields_dict(cls)[field]
    if remove:
        assume(a.default is attrs.NOTHING)
    else:
        assume(not _accepts(a, value))
    odd = {k: v for k, v in PAYLOADS[cls].items() if k != field}
    if not remove:
        odd[field] = value
    body = orjson.dumps([PAYLOADS[cls], odd])
    for name in ("orjson", "stdlib"):
        with pytest.raises(DecodeError) as raised:
            WAYS[name](body, cls)
        assert f"$[1].{field}" in str(raised.value), name
    with pytest.raises(ValueError):  # the fast path refuses it too: the caller falls back
        _msgspec(body, cls)
    response = Response(200, {}, body, "GET", yarl.URL("http://h/v2.1/x"))
    with pytest.raises(DecodeError, match=re.escape(f"$[1].{field}")):
        response.decode_list(cls)


# -- over real HTTP ---------------------------------------------------------------------------


@pytest.fixture(params=["msgspec", "pure"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pure":
        monkeypatch.setattr(_wire, "msgspec", None)
        monkeypatch.setattr(_wire, "_DECODERS", {})
    return str(request.param)


async def _everything(box: OxlinSandbox) -> tuple[list[Any], list[Any], list[Any]]:
    async with new_client(box) as client:
        user = client.as_user(box.users[0].email, box.users[0].password)
        return ([c async for c in user.connections.list()],
                [a async for a in user.accounts.list()],
                [t async for t in user.transactions.list()])


async def test_the_peer_shapes_decode_through_the_sdk(path: str) -> None:
    async with OxlinSandbox(users=1, seed=5, transactions_per_account=20) as box:
        connections, accounts, transactions = await _everything(box)
        box.set_faults(peer_shapes=True)
        peer_connections, peer_accounts, peer_transactions = await _everything(box)
    assert accounts and transactions and connections
    for strict, peer in zip(accounts, peer_accounts, strict=True):
        assert peer.classification in ("PERSONNAL", "PROFESSIONAL")
        assert peer.owner == Owner() and peer.owner.name is None
        assert peer.loan == peer.savings == peer.credit_card == {}
        assert attrs.evolve(peer, classification=strict.classification, owner=strict.owner,
                            loan=strict.loan, savings=strict.savings,
                            credit_card=strict.credit_card) == strict
    for strict, peer in zip(connections, peer_connections, strict=True):
        assert peer == attrs.evolve(strict, owner=Owner())
    for strict, peer in zip(transactions, peer_transactions, strict=True):
        assert peer.original_trx_id == strict.id and peer.check_number is None
        assert peer.transaction_date == strict.date
        assert peer.source == TransactionSource()
        assert attrs.evolve(peer, original_trx_id=None, transaction_date=None,
                            source=strict.source) == strict


async def test_the_emulator_is_strict_unless_asked(path: str) -> None:
    async with OxlinSandbox(users=1, seed=5) as box:
        assert not box.faults.peer_shapes
        _, (account, *_), _ = await _everything(box)
        assert not isinstance(account.classification, str)  # an object, or absent
        assert account.owner is not None and account.owner.name
    async with OxlinSandbox(users=1, seed=5, faults=Faults(peer_shapes=True)) as box:
        _, (account, *_), _ = await _everything(box)
        assert isinstance(account.classification, str) and account.owner == Owner()


async def test_the_cli_flag_sends_the_peer_shapes() -> None:
    async with emulator("--users", "1", "--seed", "2", "--peer-shapes") as printed, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        email, password = printed.users[0]
        token = await _password_grant(http, printed, email, password)
        async with http.get(f"{printed.api_url}/accounts",
                            headers={"Authorization": f"Bearer {token}"}) as resp:
            accounts = await resp.json()
        assert accounts and all(a["owner"] == {} and isinstance(a["classification"], str)
                                for a in accounts)


# -- odd values are logged once per field per client -----------------------------------------


async def _odd_transactions(request: web.Request) -> web.Response:
    odd = [{**TRANSACTION, "id": str(i), "label": i, "notes": ["x"]} for i in range(3)]
    page = int(request.query.get("page", "1"))
    return web.json_response(odd if page == 1 else [])


async def _token(request: web.Request) -> web.Response:
    return web.json_response({"access_token": "t", "token_type": "Bearer",
                              "expires_in": 3600, "scope": "transactions_read"})


ROUTES = [web.post("/auth/token", _token), web.get("/v2.1/transactions", _odd_transactions)]


async def test_the_first_odd_value_per_field_is_logged_once_per_client(
        path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="oxlin_async")

    def odd_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "odd value" in r.getMessage()]

    for round_ in (1, 2):  # a second client logs again: the seen set is per client
        async with client_of(ROUTES) as client:
            user = client.as_user_token("user-token")
            for _ in range(2):  # the same client, twice: nothing new to log
                got = [t async for t in user.transactions.list(page_size=3)]
                assert [t.label for t in got] == [None] * 3
                assert [t.id for t in got] == ["0", "1", "2"]
        lines = odd_lines()
        assert len(lines) == 2 * round_, lines
        assert sum("Transaction.label" in x for x in lines) == round_
        assert sum("Transaction.notes" in x for x in lines) == round_
        # the value itself (possibly personal data) is never logged, only its JSON type
        assert all("got a number" in x or "got an array" in x for x in lines)


async def test_an_odd_value_outside_a_client_is_not_an_error() -> None:
    body = orjson.dumps([{**ACCOUNT, "usage": 3, "classification": "PERSONNAL",
                          "owner": {}}])
    for way in WAYS.values():
        (account,) = way(body, Account)
        assert account.usage is None and account.classification == "PERSONNAL"
        assert account.owner == Owner()


def test_a_tolerant_field_needs_a_plain_default() -> None:
    bad = attrs.make_class("Bad", {"x": attrs.field(type=str, metadata={_gen.TOLERANT: True})},
                           frozen=True)
    with pytest.raises(_gen.Unsupported, match="needs a plain default"):
        _gen.field_kind(attrs.fields(bad).x, bad)
    assert ox.models.JSONValue is Any


async def test_a_bulk_run_over_the_peer_shapes_is_exact(path: str) -> None:
    # The failure: one drifted field used to cost every page of an export.
    async with OxlinSandbox(users=4, seed=11, transactions_per_account=30,
                            peer_shapes=True) as box, new_client(box) as client:
        run = client.bulk_transactions(users_of(box), concurrency=4)
        assert_exact(delivered(await drain(run)), truth(box))
        assert run.result is not None and not run.result.failed
