"""The one generator of JSON -> model code, for both decoding paths.

A model is decoded on one of two paths: the pure-Python one (decoded JSON, from orjson or
the standard library, to models; used by `_convert`) and the msgspec one (JSON bytes
type-checked in C into "wire" structs, then to models; used by `_wire`). Both run code
generated here from the model's fields, and what happens to a field is decided by its
*kind*: :data:`KINDS` is the one table that says, per field type,

* how the pure path checks and converts a decoded JSON value (Python statements);
* which msgspec type the value has on the wire, and the expression that turns that value
  (already type-checked by msgspec) into the model's value; or, for a kind with a
  ``native`` type (timestamps, amounts), that msgspec makes that value itself, in C, for
  a whole page in one ``msgspec.convert`` call (a struct of those fields per object).

Rules shared by every kind: a wrong JSON type fails and nothing is coerced (a boolean is
not a number, a number is not a string, a float is not a timestamp); unknown enum values
stay ``str``; amounts become exact ``Decimal``; timestamps become aware UTC ``datetime``;
extra keys are ignored. A field with a default is optional: absent or ``null`` gives the
default. :func:`field_kind` is where a field's kind is chosen.

Non-essential fields (docs/oxlin-api §15) carry the :data:`TOLERANT` marker in their attrs
metadata; :func:`field_kind` then wraps their kind in :class:`Tolerant`: what the kind
refuses is an *odd value*, reported (see :class:`OddValues`) and replaced by the field's
default, never an error. On the msgspec path the strict struct is tried first, so
documented values cost nothing more; a page with an odd value is decoded again through
a second struct that takes any JSON for the tolerant fields (:func:`wire_model`).

Objects are built without calling ``__init__`` only when :func:`draft_class` (the guard)
allows it; otherwise the generated code calls ``__init__``, which then runs the model's
validators, converters, factories and hooks. The generated source is registered with
:mod:`linecache`, so tracebacks and debuggers show it.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import enum
import linecache
import logging
import math
import types
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Optional, Union, get_args, get_origin

import attrs
from cattrs.errors import StructureHandlerNotFoundError

try:
    import msgspec
except ImportError:  # pragma: no cover - exercised only without the "speed" extra
    msgspec = None  # type: ignore[assignment]

__all__ = [
    "KINDS",
    "ODD_SINK",
    "TOLERANT",
    "Kind",
    "ModelCode",
    "OddValues",
    "Tolerant",
    "Unsupported",
    "WireModel",
    "draft_class",
    "field_kind",
    "find_kind",
    "python_hook",
    "python_model",
    "tolerant_wire_model",
    "type_error",
    "wire_model",
]

#: A cattrs-style structure hook: (value, type) -> value.
Hook = Callable[[Any, Any], Any]
#: The hook of a type, for kinds that hold other types (a tuple's items, a nested model).
Lookup = Callable[[Any], Hook]
_NoneType = type(None)


class Unsupported(StructureHandlerNotFoundError):
    """A type no kind describes: a programming error, not bad input."""


# -- helpers of the generated code ---------------------------------------------------------


def type_error(expected: str, v: Any) -> TypeError:
    return TypeError(f"expected {expected}, got {type(v).__name__} {v!r:.40}")


def _decimal(v: Any) -> Decimal:
    t = type(v)
    if t is float:
        # repr is the shortest literal that round-trips, i.e. the one the server wrote
        # for any value of up to 15 significant digits.
        d = Decimal(repr(v))
    elif t is int or t is Decimal:
        d = Decimal(v)
    else:
        raise type_error("a number", v)
    if d.is_finite():
        return d
    raise ValueError(f"expected a finite number, got {v!r}")


_UTC = dt.timezone.utc
# Pages repeat a few timestamps (dates at Paris midnight, one import time per sync):
# a dict hit is several times cheaper than building a datetime.
_EPOCH_CACHE: dict[int, dt.datetime] = {}
_EPOCH_CACHE_MAX = 4096


def _epoch(v: Any) -> dt.datetime:
    if type(v) is not int:
        raise type_error("an integer timestamp", v)
    d = _EPOCH_CACHE.get(v)
    if d is None:
        if len(_EPOCH_CACHE) >= _EPOCH_CACHE_MAX:
            _EPOCH_CACHE.clear()
        d = _EPOCH_CACHE[v] = dt.datetime.fromtimestamp(v, _UTC)
    return d


#: The attrs metadata key that marks a field as non-essential (read tolerantly).
TOLERANT = "oxlin_async.tolerant"
#: What a tolerant field's code catches: everything its kind's code (or a nested model's
#: hook) raises on bad input.
_ODD = (KeyError, TypeError, ValueError, ArithmeticError, AttributeError, OSError,
        RecursionError, StructureHandlerNotFoundError)

log = logging.getLogger("oxlin_async")

#: Who hears of the odd values decoded in this context: a client sets its own
#: `OddValues` around each request (see `_client.Requester.request`).
ODD_SINK: contextvars.ContextVar[Callable[[str, Any], None] | None] = \
    contextvars.ContextVar("oxlin_async_odd_sink", default=None)


class OddValues:
    """The fields that got an odd value: the first one per field is logged at debug level
    (its JSON type, never the value, which may be personal data). One per client."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, label: str, value: Any) -> None:
        if label not in self.seen:
            self.seen.add(label)
            log.debug("odd value in %s: got %s, not what docs/oxlin-api describes; the"
                      " field is read tolerantly (kept as it came or left out)",
                      label, _json_type(value))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for t, name in ((bool, "a boolean"), (str, "a string"), (dict, "an object"),
                    (list, "an array")):
        if isinstance(value, t):
            return name
    return "a number" if isinstance(value, (int, float, Decimal)) else type(value).__name__


def _odd(label: str, value: Any) -> None:
    sink = ODD_SINK.get()
    if sink is not None:
        sink(label, value)


class _Absent:
    """An optional field that was absent: left out of the ``__init__`` call."""

    def __repr__(self) -> str:
        return "<absent>"


# Names every piece of generated code may use; a kind's own helpers come with its Code.
_ENV: dict[str, Any] = {
    "_type_error": type_error,
    "_Decimal": Decimal,
    "_isfinite": math.isfinite,
    "_decimal": _decimal,
    "_epoch_get": _EPOCH_CACHE.get,
    "_epoch": _epoch,
    "_new": object.__new__,
    "_absent": _Absent(),
    "_ODD": _ODD,
    "_odd": _odd,
}


# -- kinds ---------------------------------------------------------------------------------


@attrs.frozen
class Code:
    """A code template and the helpers it names.

    ``{v}`` is the target, ``{r}`` the source (wire expressions only; Python statements
    read ``r``) and ``{f}`` the prefix of this code's helpers in the generated module:
    ``{f}get`` is ``env["get"]``.
    """

    text: str
    env: Mapping[str, Any] = attrs.field(factory=dict)

    def render(self, *, v: str = "v", r: str = "r", f: str = "f_") -> str:
        return self.text.replace("{v}", v).replace("{r}", r).replace("{f}", f)

    def nest(self, prefix: str) -> Code:
        """The same code with its helpers under ``prefix``, to embed it in another."""
        return Code(self.text.replace("{f}", "{f}" + prefix),
                    {prefix + k: x for k, x in self.env.items()})


class Kind:
    """How the values of some field types are decoded, on both paths."""

    name: str
    #: A Python type the JSON value must have exactly, when that is the whole check:
    #: lets containers of this kind check all their items at once.
    exact: type | None = None

    def matches(self, t: Any) -> bool:
        raise NotImplementedError

    def python(self, t: Any, lookup: Lookup) -> Code:
        """Statements turning the decoded JSON value ``r`` into ``{v}``; they raise
        ``TypeError`` or ``ValueError`` (with a message starting "expected") on bad input."""
        raise NotImplementedError

    def wire(self, t: Any) -> tuple[Any, Code]:
        """The msgspec type of the value on the wire, and the expression turning a value
        of that type (``{r}``, never None here) into the model's value."""
        raise NotImplementedError

    def native(self, t: Any) -> Any:
        """The model's type of the value when msgspec itself makes it, in C, from the
        wire value it has already type-checked (``msgspec.convert``, which may then be
        lenient: the value is of the wire type); None when Python code does
        (``wire``'s expression)."""
        return None

    def __repr__(self) -> str:
        return f"<kind {self.name}>"


class Leaf(Kind):
    """A kind for exactly one type."""

    def __init__(self, name: str, type_: Any, *, python: str, wire: Any, from_wire: str,
                 exact: type | None = None, native: Any = None) -> None:
        self.name, self.type, self.exact, self._native = name, type_, exact, native
        self._python, self._wire = Code(python), (wire, Code(from_wire))

    def matches(self, t: Any) -> bool:
        return _hashable(t) and t == self.type

    def python(self, t: Any, lookup: Lookup) -> Code:
        return self._python

    def wire(self, t: Any) -> tuple[Any, Code]:
        return self._wire

    def native(self, t: Any) -> Any:
        return self._native


class EnumOrStr(Kind):
    """``SomeEnum | str``: the member, or the value itself when the enum does not know it
    (the service adds values over time)."""

    name = "enum or unknown str"

    def matches(self, t: Any) -> bool:
        return _enum_of(t) is not None

    def python(self, t: Any, lookup: Lookup) -> Code:
        # get(r, r): the member, or r itself when the enum does not know it.
        return Code("if type(r) is not str: raise _type_error('a string', r)\n"
                    "{v} = {f}get(r, r)", {"get": _members(_enum_of(t))})

    def wire(self, t: Any) -> tuple[Any, Code]:
        return str, Code("{f}get({r}, {r})", {"get": _members(_enum_of(t))})


class OptionalOf(Kind):
    """``X | None`` where no default applies (a field with a default strips the None:
    ``null`` gives the default there)."""

    name = "optional"

    def matches(self, t: Any) -> bool:
        inner, optional = split_optional(t)
        return optional and find_kind(inner) is not None

    def python(self, t: Any, lookup: Lookup) -> Code:
        inner_t = split_optional(t)[0]
        inner = _kind(inner_t).python(inner_t, lookup).nest("o_")
        body = "".join(f"    {line}\n" for line in inner.text.splitlines())
        return Code("if r is None: {v} = None\nelse:\n" + body, inner.env)

    def wire(self, t: Any) -> tuple[Any, Code]:
        inner_t = split_optional(t)[0]
        wire, inner = _kind(inner_t).wire(inner_t)
        inner = inner.nest("o_")
        return Optional[wire], Code(f"(None if {{r}} is None else {inner.text})", inner.env)  # noqa: UP045 - a runtime type

    def native(self, t: Any) -> Any:
        inner_t = split_optional(t)[0]
        inner = _kind(inner_t).native(inner_t)
        return None if inner is None else Optional[inner]  # noqa: UP045 - a runtime type


class Container(Kind):
    """An array or object of items of one kind: a fast check when the items must be of
    one exact type, else each item through its own hook (which names what is wrong)."""

    def __init__(self, name: str, item_of: Callable[[Any], Any], json_type: type,
                 expected: str, *, each: str, python: tuple[str, str],
                 wire: tuple[Callable[[Any], Any], str, str]) -> None:
        # item_of(t): the item type, or None when `t` is not this container.
        # python: statements building {v} from `r` whose items are all fine as they are,
        # and through `{f}item`. wire: the msgspec type from the item's, the expression
        # when items are fine as they are, and the one converting each item (ITEM, `i`).
        self.name, self.item_of, self.json_type, self.expected = name, item_of, json_type, expected
        self.each, self.build, self.wire_build = each, python, wire

    def matches(self, t: Any) -> bool:
        item_t = self.item_of(t)
        return item_t is not None and find_kind(item_t) is not None

    def python(self, t: Any, lookup: Lookup) -> Code:
        item_t = self.item_of(t)
        kind = _kind(item_t)
        as_is, each_item = self.build
        env = {"item": lookup(item_t), "itype": item_t}
        text = (f"if type(r) is not {self.json_type.__name__}:"
                f" raise _type_error({self.expected!r}, r)\n")
        if kind.exact is not None:
            env["only"] = frozenset({kind.exact})
            text += (f"if {{f}}only.issuperset(map(type, {self.each})): {as_is}\n"
                     f"else: {each_item}")
        else:
            text += each_item
        return Code(text, env)

    def wire(self, t: Any) -> tuple[Any, Code]:
        item_t = self.item_of(t)
        item_wire, item = _kind(item_t).wire(item_t)
        wire_type, as_is, each_item = self.wire_build
        if item.text == "{r}":
            return wire_type(item_wire), Code(as_is)
        item = item.nest("i_")
        return wire_type(item_wire), Code(
            each_item.replace("ITEM", item.render(r="i", f="{f}")), item.env)


def _tuple_item(t: Any) -> Any:
    args = get_args(t)
    ok = get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis
    return args[0] if ok else None


def _mapping_item(t: Any) -> Any:
    args = get_args(t)
    ok = get_origin(t) in (dict, Mapping) and len(args) == 2 and args[0] is str
    return args[1] if ok else None


class Nested(Kind):
    """Another model (an attrs class), through its own generated code."""

    name = "nested model"

    def matches(self, t: Any) -> bool:
        return isinstance(t, type) and attrs.has(t)

    def python(self, t: Any, lookup: Lookup) -> Code:
        return Code("{v} = {f}hook(r, {f}type)", {"hook": lookup(t), "type": t})

    def wire(self, t: Any) -> tuple[Any, Code]:
        model = wire_model(t)
        return model.struct, Code("{f}convert({r})", {"convert": model.one})


#: The field kinds, first match wins. Adding a type, or changing how one is read, is an
#: edit here: both paths and the cattrs hooks follow.
KINDS: tuple[Kind, ...] = (
    Leaf("str", str, exact=str, wire=str, from_wire="{r}",
         python="if type(r) is not str: raise _type_error('a string', r)\n{v} = r"),
    Leaf("bool", bool, exact=bool, wire=bool, from_wire="{r}",
         python="if r is not True and r is not False: raise _type_error('a boolean', r)\n"
                "{v} = r"),
    # Any JSON value at all, as it came: where the reference itself is unsure (§15).
    Leaf("JSON value", Any, wire=Any, from_wire="{r}", python="{v} = r"),
    Leaf("JSON object", dict[str, Any], exact=dict, wire=dict[str, Any], from_wire="{r}",
         python="if type(r) is not dict: raise _type_error('an object', r)\n{v} = r"),
    # Numbers only: msgspec's own Decimal type would take strings too.
    # msgspec makes the Decimal of an int or float wire value from the float's shortest
    # repr, as `_decimal` does: the literal the server wrote.
    Leaf("exact amount", Decimal, wire=int | float, native=Decimal,
         python="{v} = _Decimal(repr(r)) if type(r) is float and _isfinite(r)"
                " else _decimal(r)",
         from_wire="(_Decimal(repr({r})) if type({r}) is float else _Decimal({r}))"),
    # msgspec makes the aware UTC datetime of an int (already checked: never a float or
    # a string, which only its lenient convert would take) in C; its range is Python's.
    Leaf("epoch timestamp", dt.datetime, wire=int, native=dt.datetime,
         python="e = _epoch_get(r) if type(r) is int else None\n"
                "{v} = _epoch(r) if e is None else e",
         from_wire="(_epoch_get({r}) or _epoch({r}))"),
    EnumOrStr(),
    OptionalOf(),
    # tuple[X, ...] from an array (a string is iterable too: not accepted).
    Container("tuple", _tuple_item, list, "an array", each="r",
              python=("{v} = tuple(r)", "{v} = tuple([{f}item(i, {f}itype) for i in r])"),
              # msgspec reads the array into a tuple itself
              wire=(lambda w: types.GenericAlias(tuple, (w, ...)),
                    "{r}", "tuple([ITEM for i in {r}])")),
    # Mapping[str, X] or dict[str, X] from an object.
    Container("mapping", _mapping_item, dict, "an object", each="r.values()",
              python=("{v} = r", "{v} = {k: {f}item(i, {f}itype) for k, i in r.items()}"),
              wire=(lambda w: types.GenericAlias(dict, (str, w)),
                    "{r}", "{k: ITEM for k, i in {r}.items()}")),
    Nested(),
)


def find_kind(t: Any) -> Kind | None:
    for kind in KINDS:
        if kind.matches(t):
            return kind
    return None


def _kind(t: Any) -> Kind:
    kind = find_kind(t)
    if kind is None:
        raise Unsupported(f"no field kind decodes {t!r}", t)
    return kind


def field_kind(a: attrs.Attribute[Any], owner: type[Any] | None = None
               ) -> tuple[Kind, Any, bool]:
    """How field ``a`` (of class ``owner``) is decoded: its kind, the type that kind
    decodes, and whether the field is optional (absent or ``null`` gives its default).

    Both paths ask this one function: a field marked :data:`TOLERANT` gets its kind
    wrapped in :class:`Tolerant`."""
    optional = a.default is not attrs.NOTHING
    t = split_optional(a.type)[0] if optional else a.type
    kind = _kind(t)
    if a.metadata.get(TOLERANT):
        if not optional or isinstance(a.default, attrs.Factory):  # type: ignore[arg-type]
            raise Unsupported(f"tolerant field {a.name!r} needs a plain default", a.type)  # type: ignore[arg-type]
        label = f"{getattr(owner, '__name__', '?')}.{a.name}"
        kind = Tolerant(kind, label, a.default)
    return kind, t, optional


class Tolerant(Kind):
    """A non-essential field: a value its kind refuses is odd, not an error. It is
    reported to :data:`ODD_SINK` and the field takes its default (left out). The
    ``try`` costs nothing while values are as documented."""

    def __init__(self, inner: Kind, label: str, fallback: Any) -> None:
        self.inner, self.label, self.fallback = inner, label, fallback
        self.name = f"tolerant {inner.name}"

    def matches(self, t: Any) -> bool:
        return self.inner.matches(t)

    def python(self, t: Any, lookup: Lookup) -> Code:
        inner = self.inner.python(t, lookup).nest("t_")
        body = "".join(f"    {line}\n" for line in inner.text.splitlines())
        return Code("try:\n" + body
                    + "except _ODD:\n    {v} = {f}fallback\n    _odd({f}label, r)",
                    dict(inner.env, fallback=self.fallback, label=self.label))

    def wire(self, t: Any) -> tuple[Any, Code]:
        # The strict struct: as the kind itself. The tolerant struct (wire_model) takes
        # any JSON for this field and runs python() on it.
        return self.inner.wire(t)

    def native(self, t: Any) -> Any:
        return self.inner.native(t)


# -- type inspection -----------------------------------------------------------------------


def split_optional(t: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (t, False). X may be a union."""
    if get_origin(t) not in (Union, types.UnionType) or _NoneType not in get_args(t):
        return t, False
    rest = tuple(a for a in get_args(t) if a is not _NoneType)
    return (rest[0] if len(rest) == 1 else Union[rest]), True  # noqa: UP007


def _enum_of(t: Any) -> type[enum.Enum] | None:
    """The enum class of ``SomeEnum | str``, else None."""
    if get_origin(t) not in (Union, types.UnionType):
        return None
    args = get_args(t)
    if len(args) != 2 or str not in args:
        return None
    other = args[0] if args[1] is str else args[1]
    return other if isinstance(other, type) and issubclass(other, enum.Enum) else None


def _members(enum_cls: type[enum.Enum] | None) -> Callable[..., Any]:
    assert enum_cls is not None
    return {m.value: m for m in enum_cls}.get


def _hashable(t: Any) -> bool:
    try:
        hash(t)
    except TypeError:  # e.g. Annotated with unhashable metadata
        return False
    return True


# -- the guard -----------------------------------------------------------------------------


def draft_class(cls: type[Any]) -> type[Any] | None:
    """Whether decoded objects of ``cls`` may skip ``__init__``: then a mutable class
    with the slot layout of ``cls`` (a "draft"), else None.

    Skipping is safe only when ``__init__`` would do nothing but store the fields: no
    validators, converters, factory defaults, ``init=False`` fields, pre/post-init hooks,
    hand-written ``__init__`` or ``__new__``; and only when CPython lets an object switch from the
    draft to ``cls`` (the same slots, exactly the fields, on every class of the MRO).
    """
    if cls not in _DRAFTS:
        _DRAFTS[cls] = _draft_class(cls)
    return _DRAFTS[cls]


_DRAFTS: dict[type[Any], type[Any] | None] = {}


def _draft_class(cls: type[Any]) -> type[Any] | None:
    if not (isinstance(cls, type) and attrs.has(cls)):
        return None
    if cls.__new__ is not object.__new__ or any(
            hasattr(cls, name)
            for name in ("__attrs_pre_init__", "__attrs_post_init__", "__attrs_init__")):
        return None
    fields = attrs.fields(cls)
    if any(not a.init or a.validator is not None or a.converter is not None
           or isinstance(a.default, attrs.Factory) for a in fields):  # type: ignore[arg-type]
        return None
    slots: set[str] = set()
    for klass in cls.__mro__[:-1]:
        own = vars(klass).get("__slots__")
        if own is None:  # instances would have a __dict__
            return None
        slots.update([own] if isinstance(own, str) else own)
    if slots != {a.name for a in fields}:  # e.g. a hash cache, a weakref slot
        return None
    draft = type(f"{cls.__name__}Draft", cls.__bases__, {"__slots__": vars(cls)["__slots__"]})
    try:
        trial: Any = object.__new__(draft)
        for a in fields:
            setattr(trial, a.name, None)  # a frozen base class would refuse
        trial.__class__ = cls
    except (TypeError, AttributeError):  # "object layout differs", frozen writes
        return None
    return draft


# -- generation ----------------------------------------------------------------------------


def _register(source: str, label: str) -> str:
    """A unique file name for generated ``source``, registered with linecache."""
    base = f"<oxlin_async generated {label}>"
    name, n = base, 1
    entry = (len(source), None, source.splitlines(True), name)
    while linecache.cache.setdefault(name, entry) != entry:
        n += 1
        name = f"{base[:-1]} #{n}>"
        entry = (len(source), None, source.splitlines(True), name)
    return name


def _exec(source: str, env: dict[str, Any], label: str) -> dict[str, Any]:
    exec(compile(source, _register(source, label), "exec"), env)
    return env


def python_hook(t: Any, lookup: Lookup) -> Hook:
    """The hook of a non-model type, from its kind's Python code."""
    code = _kind(t).python(t, lookup)
    env = dict(_ENV, **{"f_" + k: x for k, x in code.env.items()})
    body = "".join(f"    {line}\n" for line in code.render().splitlines())
    source = f"def hook(r, _=None):\n{body}    return v\n"
    hook: Hook = _exec(source, env, f"hook {_type_name(t)}")["hook"]
    return hook


def _type_name(t: Any) -> str:
    return getattr(t, "__qualname__", None) or repr(t).replace("typing.", "")


@attrs.frozen
class ModelCode:
    """The generated functions of one model on one path: ``one(o)`` decodes an object,
    ``page(items)`` a list of them (the same code inlined in a loop: a call less per
    item)."""

    one: Callable[..., Any]
    page: Callable[[list[Any]], list[Any]]
    filename: str


@attrs.frozen
class WireModel(ModelCode):
    """Also the msgspec struct the wire values are decoded into."""

    struct: Any


_SOURCE = """\
def one(o, _=None):
{one_natives}{body}
    return x

def page(items):
    out = []
    add = out.append
    for {loop}:
{page_body}
        add(x)
    return out
"""


def _fields(cls: type[Any]) -> tuple[attrs.Attribute[Any], ...]:
    # init=False fields are not read: __init__ sets them (and the guard sends such a
    # model through __init__).
    return tuple(a for a in attrs.fields(attrs.resolve_types(cls)) if a.init)


def _generate(cls: type[Any], path: str,
              field_code: Callable[[attrs.Attribute[Any], str, str, str], list[str]],
              env: dict[str, Any], natives: list[tuple[Any, ...]] | None = None
              ) -> dict[str, Any]:
    """Generate `one` and `page` for ``cls``; ``field_code(a, v, f, default)`` gives the
    lines that put field ``a``'s value in ``v``, ``default`` when absent.

    ``natives``, filled by ``field_code``: msgspec struct fields of the values msgspec
    converts in C (see `Kind.native`); the code reads them from ``n``, one such struct
    per object, all of a page's made in one call."""
    draft = draft_class(cls)
    env.update(_ENV, _cls=cls, _draft=draft)
    fields = _fields(cls)
    body = []
    if draft is not None:
        # Calling the class is a third cheaper than object.__new__(class), and the same
        # when object's own __new__ and __init__ are what a call runs.
        plain = type(draft) is type and not any(
            "__new__" in vars(k) or "__init__" in vars(k) for k in draft.__mro__[:-1])
        body.append("x = _draft()" if plain else "x = _new(_draft)")
    if not fields and path == "python":  # nothing below would notice a non-object
        body.append("if type(o) is not dict: raise _type_error('an object', o)")
    for a in fields:
        f = f"f_{a.name}_"  # this field's helpers; the shared ones start with "_"
        v, default = (f"x.{a.name}", "None") if draft is not None else (f"v_{a.name}_", "_absent")
        if draft is not None and a.default is not None and a.default is not attrs.NOTHING:
            default = f + "default"
            env[default] = a.default
        body += field_code(a, v, f, default)
    if draft is not None:
        # The object is filled as a mutable draft, then becomes a `cls`: a frozen class's
        # __setattr__ refuses writes, and going around it costs a call per field.
        # draft_class() guards this: only plain models with the draft's exact layout.
        body.append("x.__class__ = _cls")
    else:
        body.append("kw = {" + ", ".join(
            f"{a.alias!r}: v_{a.name}_" for a in fields if a.default is attrs.NOTHING) + "}")
        body += [f"if v_{a.name}_ is not _absent: kw[{a.alias!r}] = v_{a.name}_"
                 for a in fields if a.default is not attrs.NOTHING]
        body.append("x = _cls(**kw)")
    one_natives, loop = "", "o in items"
    if natives:
        # One C call per page: a loop of Python calls would cost what it saves.
        struct = msgspec.defstruct(f"{cls.__name__}Natives", natives, kw_only=True, gc=False)
        env["_natives_one"] = _converter(struct)
        env["_natives_page"] = _converter(list[struct])  # type: ignore[valid-type]
        one_natives, loop = "    n = _natives_one(o)\n", "o, n in zip(items, _natives_page(items))"
    source = _SOURCE.format(body="\n".join("    " + line for line in body),
                            page_body="\n".join("        " + line for line in body),
                            one_natives=one_natives, loop=loop)
    label = f"{path} {cls.__module__}.{cls.__qualname__}"
    return _exec(source, env, label)


def _converter(t: Any) -> Callable[[Any], Any]:
    # strict=False is what lets msgspec make a datetime of an int; every value it reads
    # here was type-checked by the strict wire struct first.
    convert = msgspec.convert
    return lambda o: convert(o, t, strict=False, from_attributes=True)


def python_model(cls: type[Any], lookup: Lookup) -> ModelCode:
    """The pure path for model ``cls``: decoded JSON objects to ``cls``.

    ``lookup`` gives the hooks of the types inside (nested models, items)."""
    env: dict[str, Any] = {}

    def field_code(a: attrs.Attribute[Any], v: str, f: str, default: str) -> list[str]:
        kind, t, optional = field_kind(a, cls)
        code = kind.python(t, lookup)
        env.update({f + k: x for k, x in code.env.items()})
        lines = code.render(v=v, f=f).splitlines()
        if not optional:
            return [f"r = o[{a.name!r}]", *lines]
        return [f"r = o.get({a.name!r})", f"if r is None: {v} = {default}", "else:",
                *("    " + line for line in lines)]

    env = _generate(cls, "python", field_code, env)
    return ModelCode(env["one"], env["page"], env["one"].__code__.co_filename)


def wire_model(cls: type[Any]) -> WireModel:
    """The msgspec path for model ``cls``: its wire struct, every field type-checked by
    msgspec, and the functions from wire structs to ``cls``. Raises :class:`Unsupported`
    for a type no kind describes."""
    model = _WIRE_MODELS.get((cls, False))
    if model is None:
        model = _WIRE_MODELS[cls, False] = _wire_model(cls, None)
    assert model is not None
    return model


def tolerant_wire_model(cls: type[Any], lookup: Lookup) -> WireModel | None:
    """Like :func:`wire_model`, but the tolerant fields take any JSON and go through
    their kinds' Python code (``lookup`` gives the pure path's hooks); None when ``cls``
    has no tolerant field."""
    if (cls, True) not in _WIRE_MODELS:
        _WIRE_MODELS[cls, True] = _wire_model(cls, lookup)
    return _WIRE_MODELS[cls, True]


_WIRE_MODELS: dict[tuple[type[Any], bool], WireModel | None] = {}


def _wire_model(cls: type[Any], lookup: Lookup | None) -> WireModel | None:
    if msgspec is None:  # pragma: no cover - exercised only without the "speed" extra
        raise Unsupported("msgspec is not installed", cls)
    env: dict[str, Any] = {}
    wire_fields: list[tuple[Any, ...]] = []
    natives: list[tuple[Any, ...]] = []
    tolerant = False

    def field_code(a: attrs.Attribute[Any], v: str, f: str, default: str) -> list[str]:
        nonlocal tolerant
        kind, t, optional = field_kind(a, cls)
        if lookup is not None and isinstance(kind, Tolerant):
            tolerant = True
            # Any JSON (msgspec gives the same builtins as orjson); the checks are the
            # pure path's, so both paths take and leave out the same values.
            code = kind.python(t, lookup)
            env.update({f + k: x for k, x in code.env.items()})
            wire_fields.append((a.name, Any, None))
            lines = code.render(v=v, f=f).splitlines()
            return [f"r = o.{a.name}", f"if r is None: {v} = {default}", "else:",
                    *("    " + line for line in lines)]
        wire, code = kind.wire(t)
        wire_fields.append((a.name, Optional[wire], None) if optional else (a.name, wire))  # noqa: UP045 - a runtime type
        native = kind.native(t)
        if native is not None:
            natives.append((a.name, Optional[native], None) if optional else (a.name, native))  # noqa: UP045 - a runtime type
            if not optional or default == "None":
                return [f"{v} = n.{a.name}"]
            return [f"r = n.{a.name}", f"{v} = {default} if r is None else r"]
        env.update({f + k: x for k, x in code.env.items()})
        expr = code.render(r="r", f=f)
        if expr == "r" and (not optional or default == "None"):  # msgspec's value is it
            return [f"{v} = o.{a.name}"]
        if not optional:
            return [f"r = o.{a.name}", f"{v} = {expr}"]
        return [f"r = o.{a.name}", f"{v} = {default} if r is None else {expr}"]

    env = _generate(cls, "wire" if lookup is None else "tolerant wire", field_code, env,
                    natives)
    if lookup is not None and not tolerant:
        return None
    # gc=False: decoded JSON cannot form cycles, and untracked structs spare the collector.
    name = f"{cls.__name__}{'Wire' if lookup is None else 'TolerantWire'}"
    struct = msgspec.defstruct(name, wire_fields, kw_only=True, gc=False)
    return WireModel(env["one"], env["page"], env["one"].__code__.co_filename, struct)


# -- rows: the values of some fields, without the model ------------------------------------


@attrs.frozen
class RowModel:
    """Records with some of a model's attributes, made from the wire without the model:
    ``page(body)`` decodes a JSON array's bytes (strictly: it raises ``ValueError`` on
    whatever the model's strict wire struct refuses) to a list of msgspec structs whose
    fields `names` hold exactly the values the models' attributes would."""

    names: tuple[str, ...]
    page: Callable[[bytes], list[Any]]
    filename: str


def row_model(cls: type[Any], names: tuple[str, ...]) -> RowModel:
    """The records of model ``cls`` with fields ``names`` (see :class:`RowModel`).

    The body is decoded into a struct of those fields and of every field that could make
    the model's decoding fail (every field not read tolerantly): a value the model would
    refuse fails here too, while tolerant fields left out cannot change the values kept.
    msgspec then makes the records in C (`Kind.native` values included); Python touches
    only the fields whose kind has Python code (an enum's member, say)."""
    key = (cls, names)
    if key not in _ROW_MODELS:
        _ROW_MODELS[key] = _row_model(cls, names)
    return _ROW_MODELS[key]


_ROW_MODELS: dict[tuple[type[Any], tuple[str, ...]], RowModel] = {}


def _row_model(cls: type[Any], names: tuple[str, ...]) -> RowModel:
    if msgspec is None:  # pragma: no cover - exercised only without the "speed" extra
        raise Unsupported("msgspec is not installed", cls)
    fields = {a.name: a for a in _fields(cls)}
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise Unsupported(f"{cls.__name__} has no field {unknown[0]!r}", cls)
    env: dict[str, Any] = dict(_ENV)
    wire_fields: list[tuple[Any, ...]] = []
    row_fields: list[tuple[Any, ...]] = []
    fixes: list[str] = []
    for a in fields.values():
        kind, t, optional = field_kind(a, cls)
        if a.name not in names and isinstance(kind, Tolerant):
            continue  # never fails the model, never in a row: not read at all
        wire, code = kind.wire(t)
        wire_fields.append((a.name, Optional[wire], None) if optional else (a.name, wire))  # noqa: UP045 - a runtime type
        if a.name not in names:
            continue
        default = a.default if optional else None
        native = kind.native(t)
        f = f"f_{a.name}_"
        expr = "r"
        if native is None:
            native = Any  # as the wire struct has it: already checked
            env.update({f + k: x for k, x in code.env.items()})
            expr = code.render(r="r", f=f)
        row_fields.append((a.name, Optional[native], None) if optional else (a.name, native))  # noqa: UP045 - a runtime type
        if expr == "r" and default is None:
            continue
        env[f + "default"] = default
        fixes += [f"r = x.{a.name}",
                  f"x.{a.name} = {f}default if r is None else {expr}" if optional
                  else f"x.{a.name} = {expr}"]
    wire_struct = msgspec.defstruct(f"{cls.__name__}RowWire", wire_fields, kw_only=True,
                                    gc=False)
    row_struct = msgspec.defstruct(f"{cls.__name__}Row", row_fields, kw_only=True, gc=False)
    env["_decode"] = msgspec.json.Decoder(list[wire_struct]).decode  # type: ignore[valid-type]
    env["_rows"] = _converter(list[row_struct])  # type: ignore[valid-type]
    body = "".join(f"        {line}\n" for line in fixes)
    source = ("def page(body):\n"
              "    out = _rows(_decode(body))\n"
              + (f"    for x in out:\n{body}" if fixes else "")
              + "    return out\n")
    page = _exec(source, env, f"rows {cls.__module__}.{cls.__qualname__}")["page"]
    return RowModel(names, page, page.__code__.co_filename)
