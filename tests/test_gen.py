"""The one model generator (`oxlin_async._gen`): every public model on both paths, the
guard that decides when ``__init__`` may be skipped, the safe path for the models that
fail it, no coercion, and generated source that tracebacks can show."""

from __future__ import annotations

import datetime as dt
import enum
import json
import linecache
import traceback
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import attrs
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oxlin_async as ox
from oxlin_async import _convert, _gen, _wire, models
from oxlin_async._convert import structure, structure_list
from oxlin_async.errors import DecodeError
from oxlin_async.models import (
    Account,
    AddConnectionResult,
    Address,
    Category,
    CategoryParent,
    Channel,
    Connection,
    Owner,
    Transaction,
    TransactionSource,
    User,
    WidgetSession,
)

UTC = dt.timezone.utc

# Every field of every public model set to a value other than its default, so that every
# field's generated code runs.
OWNER = {"name": "JANE DOE"}
CHANNEL = {"channel_definition_id": "102201", "mode": "REDIRECT", "status": "PAUSED",
           "expires": 1647300580, "last_success_date": 1639998109,
           "last_end_date": 1639998110, "credentials": [{"name": "login", "type": "TEXT"}],
           "account_types": ["CHECKINGS", "PEA"], "channel_definition_unavailable": False,
           "eligible_accounts": True}
SAMPLES: dict[type[Any], dict[str, Any]] = {
    Address: {"postcode": "84300"},
    Owner: OWNER,
    User: {"id": "3996384", "email": "jane.doe@example.com", "creation_date": 1639524127,
           "first_name": "Jane", "last_name": "Doe", "gender": "FEMALE",
           "email_verified": True, "birthdate": 482198400, "address": {"postcode": "84300"}},
    Channel: CHANNEL,
    Connection: {"id": "4422323", "user_id": "3996384", "provider_id": "1022",
                 "name": "Crédit Agricole", "status": "SUCCESS", "creation_date": 1639524236,
                 "auto_sync": True, "logo_url": "https://static.oxlin.io/1022.png",
                 "channels": [CHANNEL, {**CHANNEL, "mode": "EMBEDDED"}], "owner": OWNER,
                 "consent_per_account": False, "constraints": {"max": 3}},
    Account: {"id": "63723418", "connection_id": "4422323", "name": "COMPTE COURANT",
              "type": "LOAN", "status": "ACTIVE", "currency": "EUR", "balance": 2441.46,
              "balance_date": 1639998109, "creation_date": 1639524239,
              "iban": "FR7630003000502376843574B66", "account_number": "03412687000",
              "owner": OWNER, "usage": "PERSONAL", "last_channel_definition_id": "102201",
              "classification": {"code": "X"}, "group": "G1", "loan": {"months": 12},
              "savings": {"plan": "A"}, "credit_card": {"limit": 500}},
    TransactionSource: {"label": "CARTE X1234"},
    Transaction: {"id": "2433482741", "account_id": "63723418", "amount": -79.99,
                  "currency": "EUR", "label": "France Télécom", "type": "DEBIT",
                  "origin": "TRANSACTION", "status": "FROZEN", "category_id": "SERVICES",
                  "date": 1639954800, "import_date": 1639998109, "notes": "n",
                  "value_date": 1639954801, "booking_date": 1639954802,
                  "transaction_date": 1639954803, "last_update_date": 1639998110,
                  "remittance_information": ["France Télécom"],
                  "source": {"label": "CARTE"}, "original_trx_id": "1",
                  "check_number": "0004567"},
    CategoryParent: {"id": "DAILY_LIFE", "label": "Vie quotidienne"},
    Category: {"id": "SUPERMARKET", "label": "Supermarché", "type": "EXPENSE",
               "parent": {"id": "DAILY_LIFE", "label": "Vie quotidienne"}},
    WidgetSession: {"session_id": "s1", "add_connection_link": "https://e.example/w?s=s1",
                    "links": {"add_connection": "https://e.example/w?s=s1"}},
    AddConnectionResult: {"status": "failure", "result": "none", "connection_id": "7",
                          "error": "cancelled"},
}


def _public_models() -> list[type[Any]]:
    """Every attrs class exported by `oxlin_async.models` or `oxlin_async` that is a
    model of an API payload (they live in `oxlin_async.models`; the other exported attrs
    classes, such as `Token` or `RetryPolicy`, are built by the SDK, never decoded)."""
    exported = [getattr(models, n) for n in models.__all__] + [getattr(ox, n) for n in ox.__all__]
    found = {c for c in exported if isinstance(c, type) and attrs.has(c)
             and c.__module__ == models.__name__}
    return sorted(found, key=lambda c: c.__name__)


def _python(cls: type[Any]) -> _gen.ModelCode:
    return _gen.python_model(cls, _convert.converter.get_structure_hook)


def _wire_page(cls: type[Any], body: bytes) -> list[Any]:
    model = _gen.wire_model(cls)
    return model.page(msgspec.json.decode(body, type=list[model.struct]))


def _same(a: list[Any], b: list[Any]) -> None:
    assert a == b
    assert [repr(x) for x in a] == [repr(x) for x in b]
    for x, y in zip(a, b, strict=True):
        assert type(x) is type(y)
        for f in attrs.fields(type(x)):
            assert type(getattr(x, f.name)) is type(getattr(y, f.name)), f.name


def test_the_samples_cover_every_public_model() -> None:
    assert set(_public_models()) == set(SAMPLES)
    assert {Transaction, Account, Connection, WidgetSession} <= set(SAMPLES)


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_every_public_model_compiles_and_both_paths_agree(cls: type[Any]) -> None:
    payload = SAMPLES[cls]
    body = orjson.dumps([payload, payload])
    python_one = _python(cls).one(orjson.loads(body)[0])
    python_page = _python(cls).page(orjson.loads(body))
    stdlib_page = _python(cls).page(_convert._loads_stdlib(body))
    wire_page = _wire_page(cls, body)
    _same(python_page, wire_page)
    _same(stdlib_page, wire_page)
    _same([python_one, python_one], wire_page)
    decoded = wire_page[0]
    assert type(decoded) is cls
    for a in attrs.fields(cls):  # the sample sets every field
        if a.default is not attrs.NOTHING:
            assert getattr(decoded, a.name) != a.default, a.name
    if cls not in _convert.RESHAPED:  # through the entry points the SDK uses
        decoder = _wire.page_decoder(cls)
        assert decoder is not None
        _same(decoder(body), structure_list(orjson.loads(body), cls))
        assert structure(payload, cls) == decoded


def test_a_reshaped_payload_decodes_through_the_generated_code() -> None:
    payload = {"session_id": "s1", "_links": {"add_connection": "https://e.example/w?s=s1"}}
    assert structure(payload, WidgetSession) == _python(WidgetSession).one(
        SAMPLES[WidgetSession])
    assert _wire.page_decoder(WidgetSession) is None  # its payload is not its fields


# -- the guard -----------------------------------------------------------------------------


def test_the_api_models_skip_init() -> None:
    plain = [c for c in _public_models() if issubclass(c, models._Model)]
    assert len(plain) == 10
    for cls in plain:
        draft = _gen.draft_class(cls)
        assert draft is not None and draft is _gen.draft_class(cls)
        assert "x.__class__ = _cls" in "".join(linecache.getlines(_python(cls).filename))
    # attrs gives these a weakref slot: CPython refuses the switch, __init__ runs.
    assert _gen.draft_class(WidgetSession) is None
    assert _gen.draft_class(AddConnectionResult) is None


@attrs.frozen(weakref_slot=False)
class Plain:
    a: str


@attrs.frozen(weakref_slot=False)
class Validated:
    a: str = attrs.field(validator=attrs.validators.instance_of(str))


@attrs.frozen(weakref_slot=False)
class Converted:
    a: str = attrs.field(converter=str.upper)


@attrs.frozen(weakref_slot=False)
class FactoryDefault:
    a: str
    b: str = attrs.Factory(lambda: "made")


@attrs.frozen(weakref_slot=False)
class PostInit:
    a: str

    def __attrs_post_init__(self) -> None:
        pass


@attrs.frozen(weakref_slot=False)
class PreInit:
    a: str

    def __attrs_pre_init__(self) -> None:
        pass


@attrs.frozen(weakref_slot=False)
class NotInInit:
    a: str
    b: str = attrs.field(init=False, default="b")


@attrs.frozen(weakref_slot=False, init=False)
class OwnInit:
    a: str

    def __init__(self, a: str) -> None:
        self.__attrs_init__(a=a)  # type: ignore[attr-defined]


@attrs.frozen(weakref_slot=False)
class OwnNew:
    a: str

    def __new__(cls, *args: Any, **kwargs: Any) -> OwnNew:
        return super().__new__(cls)


@attrs.frozen
class WeakrefSlot:
    a: str


@attrs.frozen(slots=False)
class NoSlots:
    a: str


@attrs.frozen(weakref_slot=False, cache_hash=True)
class CachedHash:
    a: str


@attrs.frozen(weakref_slot=False)
class FrozenChild(Plain):
    b: str


@pytest.mark.parametrize(
    "cls",
    [Validated, Converted, FactoryDefault, PostInit, PreInit, NotInInit, OwnInit, OwnNew,
     WeakrefSlot, NoSlots, CachedHash, FrozenChild],
    ids=lambda c: c.__name__,
)
def test_the_guard_refuses_what_init_must_see(cls: type[Any]) -> None:
    assert _gen.draft_class(Plain) is not None
    assert _gen.draft_class(cls) is None
    payload = {"a": "x", "b": "y"}
    expected = cls(**{a.alias: payload[a.name] for a in attrs.fields(cls) if a.init})
    assert structure(payload, cls) == expected
    assert _wire_page(cls, orjson.dumps([payload])) == [expected]
    source = "".join(linecache.getlines(_python(cls).filename))
    assert "_cls(**kw)" in source and "__class__" not in source


class _NeedsArgs:
    """A base whose own __init__ a draft must not run (attrs replaces it on the model)."""

    __slots__ = ()

    def __init__(self, required: object) -> None:
        raise AssertionError("never called while decoding")


@attrs.frozen(weakref_slot=False)
class OnABaseWithInit(_NeedsArgs):
    a: str


def test_a_draft_whose_base_has_an_init_is_made_without_calling_it() -> None:
    assert _gen.draft_class(OnABaseWithInit) is not None  # the model is plain
    payload = {"a": "x"}
    assert structure(payload, OnABaseWithInit) == OnABaseWithInit(a="x")
    assert _wire_page(OnABaseWithInit, orjson.dumps([payload, payload])) == [
        OnABaseWithInit(a="x")] * 2
    for path in (_python(OnABaseWithInit), _gen.wire_model(OnABaseWithInit)):
        source = "".join(linecache.getlines(path.filename))
        assert "x = _new(_draft)" in source and "_draft()" not in source
    # the API's models have nothing but object's __new__ and __init__: the cheaper call
    assert "x = _draft()" in "".join(linecache.getlines(_python(Transaction).filename))


class Colour(enum.Enum):
    RED = "RED"


@attrs.frozen(kw_only=True)
class Checked:
    """Fails the guard on every count; decoded, it must look as if built by hand."""

    id: str = attrs.field(validator=attrs.validators.min_len(1))
    label: str = attrs.field(converter=str.upper)
    amount: Decimal
    tags: dict[str, Any] = attrs.field(factory=dict)
    when: dt.datetime | None = None
    colour: Colour | str = Colour.RED
    seen: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "seen", True)


CHECKED = {"id": "1", "label": "coffee", "amount": 1.5}


def _checked_paths() -> dict[str, Callable[[list[dict[str, Any]]], list[Any]]]:
    def wire(items: list[dict[str, Any]]) -> list[Any]:
        decoder = _wire.page_decoder(Checked)
        assert decoder is not None
        return decoder(orjson.dumps(items))

    return {
        "one": lambda items: [structure(item, Checked) for item in items],
        "page": lambda items: structure_list(items, Checked),
        "stdlib page": lambda items: structure_list(
            _convert._loads_stdlib(json.dumps(items)), Checked),
        "wire": wire,
    }


@pytest.mark.parametrize("path", list(_checked_paths()))
def test_a_model_failing_the_guard_goes_through_init(path: str) -> None:
    decode = _checked_paths()[path]
    assert _gen.draft_class(Checked) is None
    items = [CHECKED, {**CHECKED, "tags": None, "when": 1639954800, "colour": "BLUE"}]
    first, second = decode(items)
    assert first == Checked(id="1", label="COFFEE", amount=Decimal("1.5"))
    assert first.label == "COFFEE"  # the converter ran
    assert first.seen is True and second.seen is True  # so did __attrs_post_init__
    assert first.tags == second.tags == {} and first.tags is not second.tags  # the factory
    assert first.colour is Colour.RED and second.colour == "BLUE"  # the default
    assert second.when == dt.datetime(2021, 12, 19, 23, 0, tzinfo=UTC)
    with pytest.raises((DecodeError, ValueError)) as refused:  # the validator ran
        decode([CHECKED, {**CHECKED, "id": ""}])
    if path != "wire":
        assert isinstance(refused.value, DecodeError)
        assert "Checked" in str(refused.value) and "'id'" in str(refused.value)
    with pytest.raises((DecodeError, ValueError)):  # the kinds still check the types
        decode([{**CHECKED, "label": 5}])


def test_a_type_without_a_kind_is_a_programming_error() -> None:
    assert _wire.page_decoder(NoKind) is None
    with pytest.raises(_gen.Unsupported, match="float"):
        structure({"a": 1.5}, NoKind)


@attrs.frozen(weakref_slot=False)
class NoKind:
    a: float


# -- the kinds -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True, weakref_slot=False)
class Holder:
    """A strict nested model (the public Owner reads its name tolerantly)."""

    name: str


@attrs.frozen(kw_only=True, weakref_slot=False)
class Composite:
    """Kinds the public models use only in simpler combinations."""

    amounts: tuple[Decimal, ...]
    stamps: Mapping[str, dt.datetime]
    colours: tuple[Colour | str, ...]
    note: str | None  # required, but may be null
    nested: tuple[Holder, ...] = ()
    names: Mapping[str, str] = attrs.field(factory=dict)  # fails the guard


@attrs.frozen(kw_only=True, weakref_slot=False)
class CompositePlain:
    amounts: tuple[Decimal, ...]
    stamps: Mapping[str, dt.datetime]
    colours: tuple[Colour | str, ...]
    note: str | None
    nested: tuple[Holder, ...] = ()
    names: Mapping[str, str] = {}  # never mutated: a shared default is fine


COMPOSITE = {"amounts": [1, 2.5, -0.1], "stamps": {"a": 0, "b": 1639954800},
             "colours": ["RED", "PINK"], "note": None, "nested": [OWNER],
             "names": {"x": "y"}}


@pytest.mark.parametrize("cls", [Composite, CompositePlain], ids=lambda c: c.__name__)
def test_composite_kinds_agree_on_both_paths(cls: type[Any]) -> None:
    assert (_gen.draft_class(cls) is None) is (cls is Composite)
    body = orjson.dumps([COMPOSITE])
    (x,) = _wire_page(cls, body)
    _same([x], structure_list(orjson.loads(body), cls))
    _same([x], structure_list(_convert._loads_stdlib(body), cls))
    assert x.amounts == (Decimal(1), Decimal("2.5"), Decimal("-0.1"))
    assert str(x.amounts[2]) == "-0.1"
    assert x.stamps == {"a": dt.datetime(1970, 1, 1, tzinfo=UTC),
                        "b": dt.datetime(2021, 12, 19, 23, 0, tzinfo=UTC)}
    assert x.colours == (Colour.RED, "PINK") and x.note is None
    assert x.nested == (Holder(name="JANE DOE"),) and x.names == {"x": "y"}
    for key, bad in [("note", 5), ("amounts", [True]), ("stamps", {"a": 1.0}),
                     ("colours", [1]), ("nested", [{}]), ("names", {"x": 1}),
                     ("stamps", [0])]:
        items = [{**COMPOSITE, key: bad}]
        with pytest.raises(DecodeError, match=rf"{cls.__name__}.*{key}"):
            structure_list(items, cls)
        with pytest.raises(ValueError):  # msgspec's ValidationError
            _wire_page(cls, orjson.dumps(items))
    missing = {k: v for k, v in COMPOSITE.items() if k != "note"}
    with pytest.raises(DecodeError, match=r"\$\[0\]\.note"):
        structure_list([missing], cls)
    with pytest.raises(ValueError):
        _wire_page(cls, orjson.dumps([missing]))


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=4)
    | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(["RED", "", "x"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner,
                                                                max_size=2),
    max_leaves=4,
)
BASES = {Composite: COMPOSITE, CompositePlain: COMPOSITE,
         Checked: {**CHECKED, "when": 0, "tags": {}, "colour": "RED"}}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(BASES)), st.data())
def test_both_paths_agree_on_any_value(cls: type[Any], data: st.DataObject) -> None:
    """Safe path or not, the msgspec path accepts exactly what the pure path accepts."""
    item = dict(BASES[cls])
    for key in data.draw(st.lists(st.sampled_from(sorted(item)), max_size=2, unique=True)):
        if data.draw(st.booleans()):
            item[key] = data.draw(ANY_JSON)
        else:
            item.pop(key, None)
    body = orjson.dumps([item])
    decoder = _wire.page_decoder(cls)
    assert decoder is not None
    try:
        slow = structure_list(orjson.loads(body), cls)
    except DecodeError:
        with pytest.raises(ValueError):
            decoder(body)
    else:
        _same(decoder(body), slow)


def test_every_field_of_the_public_models_has_a_kind() -> None:
    used = set()
    for cls in _public_models():
        for a in attrs.fields(attrs.resolve_types(cls)):
            kind, _, optional = _gen.field_kind(a, cls)
            # a non-essential field's kind is a tolerant variant of one of the table's
            tolerant = isinstance(kind, _gen.Tolerant)
            assert tolerant is bool(a.metadata.get(_gen.TOLERANT))
            inner = kind.inner if isinstance(kind, _gen.Tolerant) else kind
            assert inner in _gen.KINDS
            assert optional is (a.default is not attrs.NOTHING)
            used.add(inner.name)
    assert used >= {"str", "bool", "JSON object", "exact amount", "epoch timestamp",
                    "enum or unknown str", "tuple", "mapping", "nested model", "JSON value"}


# -- no coercion ---------------------------------------------------------------------------

TX = SAMPLES[Transaction]


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (Transaction, "date", True),  # a bool is not a timestamp
        (Transaction, "import_date", False),
        (Transaction, "date", 1639954800.0),  # nor is a float
        (Transaction, "date", "1639954800"),
        (Transaction, "value_date", True),
        (Transaction, "amount", True),  # a bool is not an amount
        (Transaction, "amount", False),
        (Transaction, "amount", "-79.99"),
        (Transaction, "id", 2433482741),  # a number is not a string
        (Transaction, "type", 1),  # nor an enum value
        (Account, "balance", True),
        (Account, "currency", 978),
        (Connection, "status", 0),
        (User, "creation_date", 1639524127.5),
    ],
)
def test_no_silent_coercion_on_either_path(cls: type[Any], field: str, value: Any) -> None:
    body = orjson.dumps([SAMPLES[cls], {**SAMPLES[cls], field: value}])
    for data in (orjson.loads(body), _convert._loads_stdlib(body)):
        with pytest.raises(DecodeError, match=rf"{cls.__name__}.*\$\[1\]"):
            structure_list(data, cls)
        with pytest.raises(DecodeError, match=cls.__name__):
            structure(data[1], cls)
    decoder = _wire.page_decoder(cls)
    assert decoder is not None
    with pytest.raises(ValueError):
        decoder(body)


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (Transaction, "notes", 0),
        (Transaction, "remittance_information", [1]),
        (Transaction, "remittance_information", [True]),
        (Account, "usage", 0),
        (Connection, "auto_sync", 1),  # a number is not a bool
        (Connection, "consent_per_account", 0),
        (Channel, "account_types", [True]),
        (Channel, "eligible_accounts", 1),
        (Category, "parent", {"id": 1, "label": "x"}),
        (User, "birthdate", 482198400.5),
    ],
)
def test_no_silent_coercion_of_non_essential_fields_either(
        cls: type[Any], field: str, value: Any) -> None:
    # A value of the wrong type in a non-essential field is not coerced: it is left out
    # (docs/oxlin-api §15), the same on every path.
    body = orjson.dumps([SAMPLES[cls], {**SAMPLES[cls], field: value}])
    first, _ = structure_list(orjson.loads(body), cls)
    default = attrs.fields_dict(cls)[field].default
    expected = [first, attrs.evolve(first, **{field: default})]
    assert getattr(first, field) != default
    for data in (orjson.loads(body), _convert._loads_stdlib(body)):
        assert structure_list(data, cls) == expected
        assert structure(data[1], cls) == expected[1]
    decoder = _wire.page_decoder(cls)
    assert decoder is not None
    assert decoder(body) == expected


@pytest.mark.parametrize("value", [[1], {"a": 1}, 3, None])
def test_an_enum_field_says_a_string_was_expected(value: Any) -> None:
    for decode in (lambda p: structure(p, Transaction),
                   lambda p: structure_list([TX, p], Transaction)):
        with pytest.raises(DecodeError, match=r"expected a string, got \w+ .*\.type"):
            decode({**TX, "type": value})


# -- generated source in tracebacks --------------------------------------------------------


def _traceback_of(call: Callable[[], Any]) -> tuple[str, list[traceback.FrameSummary]]:
    try:
        call()
    except Exception as exc:
        return "".join(traceback.format_exception(exc)), traceback.extract_tb(exc.__traceback__)
    raise AssertionError("no exception")


def test_tracebacks_show_the_generated_source() -> None:
    hook = _convert.converter.get_structure_hook(Transaction)
    text, frames = _traceback_of(lambda: hook({**TX, "account_id": 5}, Transaction))
    name = "<oxlin_async generated python oxlin_async.models.Transaction>"
    assert f'File "{name}"' in text
    (frame,) = [f for f in frames if f.filename == name]
    assert frame.name == "one"
    assert frame.line == "if type(r) is not str: raise _type_error('a string', r)"
    # the line is the account id's: the one after reading it
    assert linecache.getline(name, frame.lineno - 1).strip() == "r = o['account_id']"
    linecache.checkcache()  # what debuggers and traceback do: the entry stays
    assert linecache.getline(name, frame.lineno).strip() == frame.line

    decoder = _wire.page_decoder(Transaction)
    assert decoder is not None
    far_future = orjson.dumps([{**TX, "date": 10**15}])  # beyond datetime's range
    text, frames = _traceback_of(lambda: decoder(far_future))
    # the strict struct fails, then the tolerant one (tried for odd values) fails too,
    # on the line where msgspec makes the page's timestamps (in C), naming the field
    name = "<oxlin_async generated tolerant wire oxlin_async.models.Transaction>"
    assert "<oxlin_async generated wire oxlin_async.models.Transaction>" in text
    (frame,) = [f for f in frames if f.filename == name]
    natives = "for o, n in zip(items, _natives_page(items)):"
    assert frame.name == "page" and frame.line == natives
    assert natives in text
    assert "Timestamp is out of range" in text and "`$[0].date`" in text


def test_generated_file_names_are_unique() -> None:
    one = attrs.make_class("Twin", {"a": attrs.field(type=str)}, frozen=True,
                           weakref_slot=False)
    two = attrs.make_class("Twin", {"b": attrs.field(type=bool)}, frozen=True,
                           weakref_slot=False)
    assert one.__qualname__ == two.__qualname__ and one.__module__ == two.__module__
    names = [_python(cls).filename for cls in (one, two)]
    assert names[0] != names[1]
    assert all(n.startswith("<oxlin_async generated python ") for n in names)
    assert "r = o['a']" in "".join(linecache.getlines(names[0]))
    assert "r = o['b']" in "".join(linecache.getlines(names[1]))
    assert _python(one).filename == names[0]  # the same source again: the same name
    assert structure({"a": "x"}, one) == one(a="x")
    assert structure({"b": True}, two) == two(b=True)
