"""JSON decoding and the one cattrs converter that turns API payloads into models.

Rules, shared by every model: required fields must be present with the right JSON type
(a wrong type fails; nothing is coerced); an optional field that is absent or ``null``
takes its default; extra keys are ignored; unknown enum values stay ``str``; amounts
become exact ``Decimal``; timestamps become aware UTC ``datetime``.

Speed: a page holds up to 500 transactions. cattrs' generated functions call one hook
per field and then the frozen class's ``__init__``, which writes each field through a
Python ``__setattr__``; that measured ~2x slower than pydantic. So the converter's hook
for a model class is generated here (:func:`_compile_class`): per-field checks are
inlined, and the instance is filled as a mutable "draft" with the same slots before its
class is switched to the frozen one. Other types (enum-or-str unions, tuples, optional
nested models) use ordinary cattrs hook factories.

On failure, a twin converter built on cattrs' own ``make_dict_structure_fn`` with
detailed validation decodes the payload again, only to name the model, item and field
in the :class:`~oxlin_async.errors.DecodeError`.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import types
from collections.abc import Callable, Mapping
from decimal import Decimal
from itertools import repeat
from typing import Any, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from .errors import DecodeError
from .models import WidgetSession, _Model

__all__ = ["converter", "loads", "structure", "structure_list"]

T = TypeVar("T")
Hook = Callable[[Any, Any], Any]
_NoneType = type(None)

try:
    import orjson
except ImportError:  # pragma: no cover - exercised only without the "speed" extra
    orjson = None  # type: ignore[assignment]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads_stdlib(body: bytes | str) -> Any:
    # Decimal keeps amounts exact; NaN and Infinity are not JSON and must not pass.
    return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)


def loads(body: bytes | str) -> Any:
    """Decode a JSON body, with orjson when it is installed.

    Numbers with a fraction arrive as ``float`` from orjson and as ``Decimal`` from the
    standard library; the converter accepts both. Raises :class:`DecodeError`.
    """
    try:
        if orjson is not None:
            return orjson.loads(body)
        return _loads_stdlib(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise DecodeError(f"invalid JSON: {exc}", body=body) from None


# -- leaf hooks: (value, type) -> value, raising TypeError/ValueError on bad input -------


def _type_error(expected: str, v: Any) -> TypeError:
    return TypeError(f"expected {expected}, got {type(v).__name__} {v!r:.40}")


def _str(v: Any, _: Any) -> str:
    if type(v) is str:
        return v
    raise _type_error("a string", v)


def _bool(v: Any, _: Any) -> bool:
    if v is True or v is False:
        return bool(v)
    raise _type_error("a boolean", v)


def _json_object(v: Any, _: Any) -> dict[str, Any]:
    if type(v) is dict:
        return v
    raise _type_error("an object", v)


def _decimal(v: Any, _: Any) -> Decimal:
    t = type(v)
    if t is float:
        # repr is the shortest literal that round-trips, i.e. the one the server wrote
        # for any value of up to 15 significant digits.
        d = Decimal(repr(v))
    elif t is int or t is Decimal:
        d = Decimal(v)
    else:
        raise _type_error("a number", v)
    if d.is_finite():
        return d
    raise ValueError(f"expected a finite number, got {v!r}")


_UTC = dt.timezone.utc
# Pages repeat a few timestamps (dates at Paris midnight, one import time per sync):
# a dict hit is several times cheaper than building a datetime.
_EPOCH_CACHE: dict[int, dt.datetime] = {}
_EPOCH_CACHE_MAX = 4096


def _epoch(v: Any, _: Any) -> dt.datetime:
    if type(v) is not int:
        raise _type_error("an integer timestamp", v)
    d = _EPOCH_CACHE.get(v)
    if d is None:
        if len(_EPOCH_CACHE) >= _EPOCH_CACHE_MAX:
            _EPOCH_CACHE.clear()
        d = _EPOCH_CACHE[v] = dt.datetime.fromtimestamp(v, _UTC)
    return d


_LEAVES: dict[Any, Hook] = {
    str: _str,
    bool: _bool,
    Decimal: _decimal,
    dt.datetime: _epoch,
    dict[str, Any]: _json_object,
}


# -- type inspection -------------------------------------------------------------------


def _split_optional(t: Any) -> tuple[Any, bool]:
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


def _hashable(t: Any) -> bool:
    try:
        hash(t)
    except TypeError:  # e.g. Annotated with unhashable metadata
        return False
    return True


def _is_leaf(t: Any) -> bool:
    return _hashable(t) and t in _LEAVES


def _is_var_tuple(t: Any) -> bool:
    args = get_args(t)
    return get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis


# -- hook factories --------------------------------------------------------------------


def _members(enum_cls: type[enum.Enum]) -> Callable[..., Any]:
    return {m.value: m for m in enum_cls}.get


def _enum_or_str_hook(t: Any) -> Hook:
    enum_cls = _enum_of(t)
    assert enum_cls is not None
    get = _members(enum_cls)

    # Unknown values stay plain strings: the service adds enum values over time.
    def hook(v: Any, _: Any) -> Any:
        if type(v) is str:
            return get(v, v)
        raise _type_error("a string", v)

    return hook


def _optional_hook(t: Any, conv: cattrs.Converter) -> Hook:
    inner = _split_optional(t)[0]
    hook = conv.get_structure_hook(inner)
    return lambda v, _: None if v is None else hook(v, inner)


def _var_tuple_hook(t: Any, conv: cattrs.Converter) -> Hook:
    item_type = get_args(t)[0]
    item = conv.get_structure_hook(item_type)

    # A JSON string is iterable too: insist on an array.
    def hook(v: Any, _: Any) -> tuple[Any, ...]:
        if type(v) is not list:
            raise _type_error("an array", v)
        return tuple([item(x, item_type) for x in v])

    return hook


def _detailed_class_hook(cl: Any, conv: cattrs.Converter) -> Hook:
    """cattrs' generated function; used by the diagnostic converter."""
    # null means "absent" for every optional field, not only for the ``X | None`` ones.
    overrides: dict[str, Any] = {
        a.name: override(struct_hook=_null_is_default(conv.get_structure_hook(a.type), a.default))
        for a in attrs.fields(cl)
        if a.default is not attrs.NOTHING and a.default is not None
    }
    structure_fields = make_dict_structure_fn(
        cl,
        conv,
        _cattrs_forbid_extra_keys=False,
        _cattrs_detailed_validation=conv.detailed_validation,
        **overrides,
    )

    # The generated function tests keys with ``in``, which a string also answers.
    def hook(v: Any, t: Any) -> Any:
        if not isinstance(v, Mapping):
            raise _type_error("an object", v)
        return structure_fields(v, t)

    return hook


def _null_is_default(hook: Hook, default: Any) -> Hook:
    return lambda v, t: default if v is None else hook(v, t)


# -- the generated class hook ----------------------------------------------------------

# Per field, the code that turns the JSON value ``r`` into ``v``. "{v}" is the variable,
# "{f}" a prefix for this field's helpers in the generated function's namespace.
_INLINE: dict[Any, str] = {
    str: "if type(r) is not str: raise _type_error('a string', r)\n{v} = r",
    bool: "if r is not True and r is not False: raise _type_error('a boolean', r)\n{v} = r",
    dict[str, Any]: "if type(r) is not dict: raise _type_error('an object', r)\n{v} = r",
    Decimal: "{v} = _Decimal(repr(r)) if type(r) is float and _isfinite(r) else _decimal(r, 0)",
    dt.datetime: "{v} = _epoch_get(r) if type(r) is int else None\n"
    "if {v} is None: {v} = _epoch(r, 0)",
    tuple[str, ...]: "if type(r) is not list or not _only_str.issuperset(map(type, r)):\n"
    "    raise _type_error('an array of strings', r)\n{v} = tuple(r)",
}
# get(r, r): the member, or the value itself when unknown (then it must be a str).
_ENUM_CODE = (
    "{v} = {f}get(r, r)\n"
    "if type({v}) is not str and type({v}) is not {f}enum: raise _type_error('a string', r)"
)
_HOOK_CODE = "{v} = {f}hook(r, {f}type)"

_ENV = {
    "_type_error": _type_error,
    "_Decimal": Decimal,
    "_isfinite": math.isfinite,
    "_decimal": _decimal,
    "_epoch_get": _EPOCH_CACHE.get,
    "_epoch": _epoch,
    "_only_str": frozenset({str}),
    "_new": object.__new__,
}


def _draft_class(cls: type[Any]) -> type[Any] | None:
    """A mutable class with the slot layout of ``cls``, if CPython lets objects switch
    from it to ``cls``; None otherwise."""
    slots = cls.__dict__.get("__slots__")
    if slots is None:
        return None
    draft = type(f"{cls.__name__}Draft", cls.__bases__, {"__slots__": slots})
    try:
        draft().__class__ = cls
    except TypeError:  # pragma: no cover - "object layout differs"
        return None
    return draft


_SOURCE = """\
def structure_one(o, _=None):
{body}
    return x

def structure_page(items):
    out = []
    add = out.append
    for o in items:
{page_body}
        add(x)
    return out
"""

#: Page decoders of the model classes, filled in as their hooks are compiled.
_PAGE_DECODERS: dict[type, Callable[[list[Any]], list[Any]]] = {}


def _compile_class(cls: Any, conv: cattrs.Converter) -> Hook:
    """The structure hook of a model class, and its page decoder: the same code, once
    as a function and once inlined in a loop, which saves a call per item."""
    fields = attrs.fields(attrs.resolve_types(cls))
    env: dict[str, Any] = dict(_ENV, _cls=cls)
    body = []
    for a in fields:
        f = f"f_{a.name}_"  # helpers of this field; the shared ones start with "_"
        v = f"v_{a.name}_"
        inner, _ = _split_optional(a.type)
        enum_cls = _enum_of(inner)
        code = _INLINE.get(inner) if _hashable(inner) else None
        if enum_cls is not None:
            code = _ENUM_CODE
            env[f + "get"], env[f + "enum"] = _members(enum_cls), enum_cls
        elif code is None:
            code = _HOOK_CODE
            env[f + "hook"], env[f + "type"] = conv.get_structure_hook(inner), inner
        lines = code.format(v=v, f=f).splitlines()
        if a.default is attrs.NOTHING:
            body += [f"r = o[{a.name!r}]", *lines]
        else:
            env[f + "default"] = a.default
            default = "None" if a.default is None else f + "default"
            body += [f"r = o.get({a.name!r})", f"if r is None: {v} = {default}", "else:"]
            body += ["    " + line for line in lines]
    draft = _draft_class(cls)
    if draft is not None:
        env["_draft"] = draft
        body.append("x = _new(_draft)")
        body += [f"x.{a.name} = v_{a.name}_" for a in fields]
        body.append("x.__class__ = _cls")
    else:  # pragma: no cover - frozen writes, the slow way
        env["_setattr"] = object.__setattr__
        body.append("x = _new(_cls)")
        body += [f"_setattr(x, {a.name!r}, v_{a.name}_)" for a in fields]
    source = _SOURCE.format(
        body="\n".join(" " * 4 + line for line in body),
        page_body="\n".join(" " * 8 + line for line in body),
    )
    exec(compile(source, f"<oxlin_async: structure {cls.__name__}>", "exec"), env)
    _PAGE_DECODERS[cls] = env["structure_page"]
    hook: Hook = env["structure_one"]
    return hook


def _configure(conv: cattrs.Converter, class_hook: Callable[..., Hook]) -> cattrs.Converter:
    # Later registrations take precedence over earlier ones.
    conv.register_structure_hook_factory(attrs.has, class_hook)
    conv.register_structure_hook(WidgetSession, _widget_session)
    conv.register_structure_hook_factory(_is_var_tuple, _var_tuple_hook)
    conv.register_structure_hook_factory(lambda t: _split_optional(t)[1], _optional_hook)
    conv.register_structure_hook_factory(_is_leaf, lambda t: _LEAVES[t])
    conv.register_structure_hook_factory(lambda t: _enum_of(t) is not None, _enum_or_str_hook)
    # str and bool have direct (coercing) hooks that no factory overrides.
    conv.register_structure_hook(str, _str)
    conv.register_structure_hook(bool, _bool)
    return conv


def _widget_session(v: Any, _: Any) -> WidgetSession:
    links = _json_object(v["_links"], None)
    return WidgetSession(
        session_id=_str(v["session_id"], None),
        add_connection_link=_str(links["add_connection"], None),
        # Links the reference does not describe are kept when they are plain URLs.
        links={k: u for k, u in links.items() if type(u) is str},
    )


def _model_hook(cl: Any, conv: cattrs.Converter) -> Hook:
    # The generated hook bypasses __init__: only plain fields may take that shortcut.
    plain = isinstance(cl, type) and issubclass(cl, _Model)
    plain = plain and not hasattr(cl, "__attrs_post_init__") and all(
        a.init and a.validator is None and a.converter is None for a in attrs.fields(cl)
    )
    return _compile_class(cl, conv) if plain else _detailed_class_hook(cl, conv)


#: The converter. Its model hooks are generated by :func:`_compile_class`.
converter = _configure(
    cattrs.Converter(detailed_validation=False, forbid_extra_keys=False), _model_hook
)
# Used only after a failure, to say which field was wrong.
_diagnostic = _configure(
    cattrs.Converter(detailed_validation=True, forbid_extra_keys=False), _detailed_class_hook
)


# -- entry points ----------------------------------------------------------------------

_FAILURES = (
    KeyError,
    TypeError,
    ValueError,
    ArithmeticError,
    AttributeError,
    OSError,  # datetime.fromtimestamp beyond the platform's range
    cattrs.BaseValidationError,
)


def _format(exc: BaseException, t: type | None) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, (TypeError, ValueError)) and str(exc).startswith("expected"):
        return str(exc)
    return cattrs.v.format_exception(exc, t)


def _describe(cls: type[Any], obj: Any, path: str, error: BaseException) -> str:
    """Where and why ``obj`` is not a ``cls``."""
    if attrs.has(cls) and type(obj) is not dict:
        return f"{_type_error('an object', obj)} @ {path}"
    try:
        _diagnostic.structure(obj, cls)
    except cattrs.ClassValidationError as exc:
        return "; ".join(cattrs.transform_error(exc, path, _format)[:3])
    except KeyError as exc:  # from a hand-written hook, which cattrs did not annotate
        return f"required field {exc.args[0]!r} missing @ {path}"
    except _FAILURES as exc:
        return f"{_format(exc, None)} @ {path}"
    return f"{_format(error, None)} @ {path}"  # pragma: no cover - the converters agree


def structure(obj: Any, cls: type[T]) -> T:
    """Turn decoded JSON into ``cls``; raises :class:`DecodeError` on a wrong shape."""
    try:
        return converter.structure(obj, cls)
    except _FAILURES as exc:
        error = exc
    name = getattr(cls, "__name__", str(cls))
    raise DecodeError(f"cannot decode {name}: {_describe(cls, obj, '$', error)}")


def structure_list(data: Any, cls: type[T]) -> list[T]:
    """Turn a decoded JSON array (a page) into a list of ``cls``."""
    name = getattr(cls, "__name__", str(cls))
    if type(data) is not list:
        raise DecodeError(f"cannot decode a list of {name}: {_type_error('an array', data)}")
    hook = converter.get_structure_hook(cls)
    page = _PAGE_DECODERS.get(cls)
    try:
        return page(data) if page is not None else list(map(hook, data, repeat(cls)))
    except _FAILURES:
        pass
    for i, item in enumerate(data):
        try:
            hook(item, cls)
        except _FAILURES as exc:
            detail = _describe(cls, item, f"$[{i}]", exc)
            raise DecodeError(f"cannot decode a list of {name}: {detail}") from None
    raise AssertionError("unreachable")  # pragma: no cover - the hook is deterministic
