"""Property tests (issue 9): whatever bytes or JSON a server sends as a token answer, an
error body or a page, and whatever a caller passes as a filter, the result is a value or
an `ox` error, never a bare ValueError, TypeError, RecursionError or OverflowError; and
an excerpt never shows a secret."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

import oxlin_async as ox
from oxlin_async import _convert, _params
from oxlin_async._client import _token_from
from oxlin_async._retry import parse_retry_after
from oxlin_async._transport import Response
from oxlin_async.errors import _excerpt, api_error_from_response

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20)
TOKEN_FIELDS = st.fixed_dictionaries({}, optional={
    "access_token": JSON | st.text(min_size=1), "token_type": JSON | st.sampled_from(
        ["Bearer", "bearer", "mac"]), "expires_in": JSON | st.integers(-2, 10**30)
    | st.floats(), "refresh_token": JSON, "scope": JSON})


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()


def _nested(depth: int, opener: bytes) -> bytes:
    """JSON nested `depth` deep: far beyond a recursion limit at the top of the range."""
    if opener == b"[":
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


BODIES = (st.binary(max_size=300) | JSON.map(_dump) | TOKEN_FIELDS.map(_dump)
          | st.builds(_nested, st.integers(1, 100_000), st.sampled_from([b"[", b"{"])))


def _response(body: bytes, status: int = 200, *, secret: bool = False) -> Response:
    return Response(status, {}, body, "POST", URL("https://auth.example/token"), secret=secret)


@PROPERTY
@given(body=BODIES)
def test_a_token_answer_is_a_token_or_a_decode_error(body: bytes) -> None:
    try:
        token = _token_from(0.0)(_response(body, secret=True))
    except ox.DecodeError as error:
        assert error.excerpt is None  # a token answer is never excerpted
        assert error.__context__ is None and error.__cause__ is None
        return
    assert isinstance(token, ox.Token) and token.access_token.isascii()
    assert all("!" <= c <= "~" for c in token.access_token)
    assert math.isfinite(token.expires_at) and token.lifetime > 0


@PROPERTY
@given(answer=TOKEN_FIELDS)
def test_a_token_answer_is_accepted_exactly_when_valid(answer: dict[str, Any]) -> None:
    access, kind = answer.get("access_token"), answer.get("token_type")
    lifetime, refresh = answer.get("expires_in"), answer.get("refresh_token")
    valid = (isinstance(access, str) and bool(access) and all("!" <= c <= "~" for c in access)
             and isinstance(kind, str) and kind.lower() == "bearer"
             and type(lifetime) in (int, float) and math.isfinite(lifetime) and lifetime > 0
             and (refresh is None or (isinstance(refresh, str) and bool(refresh)
                                      and all("!" <= c <= "~" for c in refresh)))
             and isinstance(answer.get("scope", ""), str))
    try:
        _token_from(0.0)(_response(_dump(answer), secret=True))
    except ox.DecodeError as error:
        assert not valid, error
        return
    assert valid


@PROPERTY
@given(status=st.integers(100, 999), body=BODIES, oauth=st.booleans(),
       documented=st.booleans())
def test_an_error_body_is_always_a_typed_error(status: int, body: bytes, oauth: bool,
                                               documented: bool) -> None:
    error = api_error_from_response(status, body, oauth=oauth, documented=documented,
                                    location="https://u:pw@elsewhere.example/x")
    assert isinstance(error, ox.APIError) and error.status == status
    assert error.code is None or isinstance(error.code, str)
    assert "pw" not in str(error)


@PROPERTY
@given(body=BODIES, model=st.sampled_from([ox.Transaction, ox.Account, ox.Connection,
                                           ox.Category]))
def test_a_page_is_a_list_or_a_decode_error(body: bytes, model: type[Any]) -> None:
    response = Response(200, {}, body, "GET", URL("https://api.example/v2.1/x"))
    try:
        page = response.decode_list(model)
    except ox.DecodeError:
        return
    assert isinstance(page, list) and all(isinstance(item, model) for item in page)


@PROPERTY
@given(body=BODIES)
def test_one_model_is_a_value_or_a_decode_error(body: bytes) -> None:
    response = Response(200, {}, body, "GET", URL("https://api.example/v2.1/users/me"))
    try:
        user = response.decode(ox.User)
    except ox.DecodeError as error:
        assert error.status == 200
        return
    assert isinstance(user, ox.User)


SECRET = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
                 min_size=8, max_size=40).map(lambda s: "SECRET" + s)
KEYS = st.sampled_from(["access_token", "Access_Token", "REFRESH_TOKEN", "token", "id_token",
                        "client_secret", "password", "Password", "session_id"])


@PROPERTY
@given(key=KEYS, secret=SECRET, shape=st.sampled_from(["str", "escaped", "array", "object",
                                                       "form"]),
       before=st.dictionaries(st.sampled_from(["a", "token_type", "id"]), st.integers(),
                              max_size=2), cut=st.integers(1, 400))
def test_an_excerpt_masks_every_secret(key: str, secret: str, shape: str,
                                       before: dict[str, int], cut: int) -> None:
    value: Any = {"str": secret, "escaped": 'a"b\\' + secret, "array": ["x", secret],
                  "object": {"v": secret}, "form": secret}[shape]
    if shape == "form":
        text = f"a=1&{key}={secret}&b=2"
    else:
        text = json.dumps({**before, key: value, "z": 1})
    for body in (text, text[:cut], text.encode()):
        excerpt = _excerpt(body)
        assert excerpt is not None
        # no more than a sliver of the secret: a cut body may end inside its key
        assert secret not in excerpt and secret[:10] not in excerpt


@PROPERTY
@given(value=st.text(max_size=60) | st.datetimes(timezones=st.just(dt.timezone.utc)).map(
    lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")))
def test_a_retry_after_is_seconds_or_none(value: str) -> None:
    seconds = parse_retry_after(value, 1_700_000_000.0)
    assert seconds is None or (isinstance(seconds, float) and seconds >= 0)


@PROPERTY
@given(value=st.decimals() | st.integers() | st.floats() | st.text(max_size=30)
       | st.booleans() | st.none())
def test_an_amount_filter_is_sent_short_or_refused(value: Any) -> None:
    try:
        wire = _params.amount("min_amount", value)
    except ox.ArgumentError as error:
        assert error.argument == "min_amount"
        return
    assert len(wire) <= 13 + 1 + 6 + 10  # sign, 12 digits, point, places (and zeros)
    assert abs(Decimal(wire)) < _params.AMOUNT_MAX


@PROPERTY
@given(value=st.dates() | st.datetimes(timezones=st.timezones()) | st.datetimes()
       | st.integers() | st.integers(-10**40, 10**40))
def test_a_date_filter_is_epoch_seconds_or_refused(value: Any) -> None:
    for encode in (_params.start_time, _params.end_time):
        try:
            wire = encode("end_date", value)
        except ox.ArgumentError as error:
            assert error.argument == "end_date"
            continue
        assert int(wire) == Decimal(wire)
        assert _params.EPOCH_MIN - 86400 <= int(wire) <= _params.EPOCH_MAX + 3 * 86400


@PROPERTY
@given(body=BODIES)
def test_the_stdlib_json_path_gives_a_value_or_a_decode_error(body: bytes) -> None:
    # The path taken without the "speed" extra (no orjson): its RecursionError too.
    original = _convert.orjson
    _convert.orjson = None
    try:
        try:
            _convert.loads(body)
        except ox.DecodeError as error:
            assert error.__context__ is None and error.__cause__ is None
    finally:
        _convert.orjson = original
