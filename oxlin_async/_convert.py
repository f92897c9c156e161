"""JSON decoding and the cattrs converter that turns API payloads into models.

The rules (required fields present with the right JSON type, nothing coerced, optional
fields absent or ``null`` take their default, extra keys ignored, unknown enum values
kept as ``str``, exact ``Decimal`` amounts, aware UTC timestamps) are those of the field
kinds in :mod:`oxlin_async._gen`, which also generates the converter's hook for every
model class: the same code, from the same table, as the msgspec path in `_wire`.

On failure, a twin converter built on cattrs' own ``make_dict_structure_fn`` with
detailed validation decodes the payload again, only to name the model, item and field
in the :class:`~oxlin_async.errors.DecodeError`. Its hooks for the field types are the
kinds' own code too, so both converters accept and refuse the same values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from itertools import repeat
from typing import Any, TypeVar, cast

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from . import _gen
from ._gen import type_error as _type_error
from .errors import DecodeError
from .models import WidgetSession

__all__ = ["converter", "loads", "structure", "structure_list"]

T = TypeVar("T")
Hook = _gen.Hook

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
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        # Only the message is kept, and the error raised outside this block: the JSON
        # library's exception holds the whole body (``.doc``), secrets and all, and
        # ``__context__`` would keep it reachable.
        problem = _json_problem(exc)
    raise DecodeError(f"invalid JSON: {problem}", body=body)


def _json_problem(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg}: line {exc.lineno} column {exc.colno} (char {exc.pos})"
    return str(exc)[:200]


# -- hooks ---------------------------------------------------------------------------------


def _model_hook(cl: Any, conv: cattrs.Converter) -> Hook:
    """The converter's hook of a model class: generated, with its page decoder."""
    model = _gen.python_model(cl, conv.get_structure_hook)
    if cl not in RESHAPED:
        _PAGE_DECODERS[cl] = model.page
    return model.one


#: Page decoders of the model classes, filled in as their hooks are generated.
_PAGE_DECODERS: dict[type, Callable[[list[Any]], list[Any]]] = {}


def _detailed_class_hook(cl: Any, conv: cattrs.Converter) -> Hook:
    """cattrs' generated function; used by the diagnostic converter."""
    # null means "absent" for every optional field, not only for the ``X | None`` ones;
    # a tolerant field never fails (what is odd there is not what went wrong).
    overrides: dict[str, Any] = {
        a.name: override(struct_hook=_tolerant(
            _null_is_default(conv.get_structure_hook(a.type), a), a))
        for a in attrs.fields(attrs.resolve_types(cl))
        if a.metadata.get(_gen.TOLERANT)
        or (a.default is not attrs.NOTHING and a.default is not None)
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


def _tolerant(hook: Hook, a: attrs.Attribute[Any]) -> Hook:
    if not a.metadata.get(_gen.TOLERANT):
        return hook
    default = a.default

    def tolerant(v: Any, t: Any) -> Any:
        try:
            return hook(v, t)
        except Exception:
            return default

    return tolerant


def _null_is_default(hook: Hook, a: attrs.Attribute[Any]) -> Hook:
    default = a.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        make: Callable[[], Any] = cast(Any, default).factory
        return lambda v, t: make() if v is None else hook(v, t)
    return lambda v, t: default if v is None else hook(v, t)


# The payload of a widget session nests its link under "_links"; the model is flat.
RESHAPED: dict[type, Callable[[Any], dict[str, Any]]] = {}


def _widget_session_fields(v: Any) -> dict[str, Any]:
    links = v["_links"]
    if type(links) is not dict:
        raise _type_error("an object", links)
    return {
        "session_id": v["session_id"],
        "add_connection_link": links["add_connection"],
        # Links the reference does not describe are kept when they are plain URLs.
        "links": {k: u for k, u in links.items() if type(u) is str},
    }


RESHAPED[WidgetSession] = _widget_session_fields


def _configure(conv: cattrs.Converter, class_hook: Callable[..., Hook]) -> cattrs.Converter:
    # Later registrations take precedence over earlier ones.
    conv.register_structure_hook_factory(
        lambda t: _gen.find_kind(t) is not None,
        lambda t: _gen.python_hook(t, conv.get_structure_hook))
    conv.register_structure_hook_factory(attrs.has, lambda t: class_hook(t, conv))
    # str and bool have direct (coercing) hooks that no factory overrides.
    for t in (str, bool):
        conv.register_structure_hook(t, _gen.python_hook(t, conv.get_structure_hook))
    for cls, reshape in RESHAPED.items():
        conv.register_structure_hook(cls, _reshaped(cls, reshape, class_hook(cls, conv)))
    return conv


def _reshaped(cls: type, reshape: Callable[[Any], dict[str, Any]], hook: Hook) -> Hook:
    return lambda v, _: hook(reshape(v), cls)


#: The converter. Its model hooks are generated by :func:`oxlin_async._gen.python_model`.
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
    if isinstance(exc, ValueError) and t is None and str(exc):
        # e.g. a model's own validator, run by __init__: its message names the field.
        return f"invalid value ({exc!s:.100})"
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
