"""The error hierarchy: error bodies to typed exceptions, messages, secret masking and
pickling (no network)."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import yarl

import oxlin_async as ox
from oxlin_async.errors import (
    APIError,
    ArgumentError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    DecodeError,
    InternalServerError,
    InvalidClientError,
    InvalidGrantError,
    NotFoundError,
    OAuthError,
    OxlinError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
    api_error_from_response,
)
from oxlin_async.models import (
    parse_callback_url,
)

# -- errors ----------------------------------------------------------------------------


def _body(code: str, description: str = "something happened") -> bytes:
    return json.dumps({"error": code, "error_description": description, "id": "x"}).encode()


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (400, _body("BAD_PARAMETER"), BadRequestError, "BAD_PARAMETER"),
        (400, _body("invalid_request"), BadRequestError, "invalid_request"),
        (401, _body("invalid_token"), AuthenticationError, "invalid_token"),
        (401, _body("invalid_client"), AuthenticationError, "invalid_client"),
        (403, _body("insufficient_scope"), PermissionDeniedError, "insufficient_scope"),
        (404, _body("RESOURCE_UNKNOWN"), NotFoundError, "RESOURCE_UNKNOWN"),
        (409, _body("CONFLICT"), ConflictError, "CONFLICT"),
        (429, _body("TOO_MANY_REQUESTS"), RateLimitError, "TOO_MANY_REQUESTS"),
        (500, _body("INTERNAL_ERROR"), InternalServerError, "INTERNAL_ERROR"),
        (503, _body("SERVICE_UNAVAILABLE"), ServiceUnavailableError, "SERVICE_UNAVAILABLE"),
        (502, _body("BAD_GATEWAY"), ServerError, "BAD_GATEWAY"),
        (504, b"", ServerError, None),
        # the status decides; the code only narrows it
        (400, _body("invalid_token"), BadRequestError, "invalid_token"),
        (502, _body("SERVICE_UNAVAILABLE"), ServiceUnavailableError, "SERVICE_UNAVAILABLE"),
        (410, _body("RESOURCE_UNKNOWN"), NotFoundError, "RESOURCE_UNKNOWN"),
        (418, _body("TEAPOT"), APIError, "TEAPOT"),
        (405, b"", APIError, None),
        # bodies that are not the documented JSON still map by status
        (502, b"<html><body>502 Bad Gateway</body></html>", ServerError, None),
        (404, b"<html>Not Found</html>", NotFoundError, None),
        (429, b"slow down", RateLimitError, None),
        (500, b'["INTERNAL_ERROR"]', InternalServerError, None),
        (401, b'{"error": 401}', AuthenticationError, None),
        (400, b"\xff\xfe", BadRequestError, None),
    ],
)
def test_api_error_classification(status: int, body: bytes, cls: type[APIError],
                                  code: str | None) -> None:
    error = api_error_from_response(status, body, request_id="rid-1", method="GET",
                                    url="https://sandbox-api.oxlin.io/v2.1/accounts",
                                    retry_after=None)
    assert type(error) is cls
    assert error.status == status and error.code == code and error.request_id == "rid-1"
    assert error.method == "GET" and error.url == "https://sandbox-api.oxlin.io/v2.1/accounts"
    assert isinstance(error, APIError) and isinstance(error, OxlinError)
    if code is None:
        assert error.description is None


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (400, _body("invalid_grant"), InvalidGrantError),
        (401, _body("invalid_client"), InvalidClientError),
        (400, _body("invalid_client"), InvalidClientError),
        (400, _body("invalid_scope"), OAuthError),
        (400, _body("unsupported_grant_type"), OAuthError),
        (400, _body("invalid_request"), OAuthError),
        (401, b"<html>denied</html>", OAuthError),
        (429, _body("TOO_MANY_REQUESTS"), RateLimitError),
        (500, b"<html>oops</html>", InternalServerError),
        (503, b"", ServiceUnavailableError),
        (502, _body("invalid_grant"), ServerError),
    ],
)
def test_oauth_error_classification(status: int, body: bytes, cls: type[APIError]) -> None:
    error = api_error_from_response(status, body, request_id=None, method="POST",
                                    url="https://sandbox-auth.oxlin.io/token",
                                    retry_after=None, oauth=True)
    assert type(error) is cls


def test_error_hierarchy() -> None:
    assert issubclass(InternalServerError, ServerError)
    assert issubclass(ServiceUnavailableError, ServerError)
    assert issubclass(InvalidGrantError, OAuthError) and issubclass(InvalidClientError, OAuthError)
    assert issubclass(OAuthError, APIError) and issubclass(RateLimitError, APIError)
    assert issubclass(RequestTimeoutError, TransportError)
    assert issubclass(ArgumentError, ValueError) and issubclass(ArgumentError, OxlinError)
    for cls in (APIError, TransportError, DecodeError, ArgumentError):
        assert issubclass(cls, OxlinError)
    assert ox.NotFoundError is NotFoundError and ox.parse_callback_url is parse_callback_url


def test_api_error_message() -> None:
    error = api_error_from_response(
        404, _body("RESOURCE_UNKNOWN", "Unknown account 123"), request_id="abc",
        method="GET", url=yarl.URL("https://sandbox-api.oxlin.io/v2.1/accounts/123"),
        retry_after=None,
    )
    assert str(error) == (
        "404 RESOURCE_UNKNOWN: Unknown account 123 "
        "(GET https://sandbox-api.oxlin.io/v2.1/accounts/123, request_id=abc)"
    )
    assert error.description == "Unknown account 123"
    bare = api_error_from_response(502, b"<html/>", retry_after=None)
    assert str(bare) == "502"
    assert str(NotFoundError(404, "RESOURCE_UNKNOWN", method="GET", url="/v2.1/accounts/1")) == (
        "404 RESOURCE_UNKNOWN (GET /v2.1/accounts/1)"
    )


def test_retry_after() -> None:
    limited = api_error_from_response(429, _body("TOO_MANY_REQUESTS", "Slow down"),
                                      request_id="r", method="GET", url="/v2.1/accounts",
                                      retry_after=30.0)
    assert isinstance(limited, RateLimitError) and limited.retry_after == 30.0
    assert str(limited) == (
        "429 TOO_MANY_REQUESTS: Slow down (GET /v2.1/accounts, request_id=r, retry_after=30s)"
    )
    busy = api_error_from_response(503, b"", retry_after=1.5)
    assert isinstance(busy, ServiceUnavailableError) and busy.retry_after == 1.5
    assert api_error_from_response(503, b"", retry_after=None).retry_after is None  # type: ignore[attr-defined]
    assert not hasattr(api_error_from_response(500, b"", retry_after=3), "retry_after")


def test_error_messages_hold_no_secret() -> None:
    error = api_error_from_response(401, _body("invalid_client"), retry_after=None,
                                    method="POST", url="https://id:s3cret@auth.example/token",
                                    oauth=True)
    assert "s3cret" not in str(error) and "s3cret" not in repr(error)
    assert error.url == "https://auth.example/token"
    transport = TransportError("connection refused", method="GET",
                               url="https://u:pw@api.example/v2.1/users/me")
    assert "pw" not in str(transport) and transport.url == "https://api.example/v2.1/users/me"


def test_long_descriptions_are_cut() -> None:
    error = api_error_from_response(400, _body("BAD_PARAMETER", "x" * 5000), retry_after=None)
    assert error.description is not None and len(error.description) == 500


def test_decode_error() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.secret-part"
    body = ('{"access_token": "' + token + '", "token_type": "Bearer", "refresh_token": '
            '"rt_5Zg7m1QxY0n8uCkq3vBf", "expires_in": "3600"' + " " * 300 + "}").encode()
    error = DecodeError("POST /token: no expires_in", status=200, request_id="rid", body=body)
    assert error.excerpt is not None and len(error.excerpt) <= 200
    assert token not in error.excerpt and "rt_5Zg7" not in error.excerpt
    assert '"token_type": "Bearer"' in error.excerpt
    assert str(error) == "POST /token: no expires_in (status 200, request_id=rid)"
    assert token not in repr(error)
    cut = DecodeError("cut", body=b'{"access_token": "eyJhbGciOiJSUzI1NiJ9.abc')
    assert cut.excerpt == '{"access_token": "***'
    form = DecodeError("form", body="grant_type=password&password=hunter2&username=a")
    assert form.excerpt is not None and "hunter2" not in form.excerpt
    later = DecodeError("bad shape")
    assert str(later) == "bad shape" and later.excerpt is None
    later.status, later.request_id = 200, "r2"
    assert str(later) == "bad shape (status 200, request_id=r2)"


def test_argument_error() -> None:
    error = ArgumentError("limit", "must be between 1 and 500, got 0")
    assert isinstance(error, ValueError) and error.argument == "limit"
    assert str(error) == "invalid argument 'limit': must be between 1 and 500, got 0"


def test_transport_errors() -> None:
    error = RequestTimeoutError("the request timed out", method="GET",
                                url="https://sandbox-api.oxlin.io/v2.1/accounts")
    assert isinstance(error, TransportError)
    assert (error.method, error.url) == ("GET", "https://sandbox-api.oxlin.io/v2.1/accounts")
    assert str(error) == "the request timed out (GET https://sandbox-api.oxlin.io/v2.1/accounts)"


@pytest.mark.parametrize(
    "error",
    [
        api_error_from_response(404, _body("RESOURCE_UNKNOWN"), request_id="r", method="GET",
                                url="/x", retry_after=None),
        api_error_from_response(429, b"", retry_after=2.0),
        api_error_from_response(400, _body("invalid_grant"), retry_after=None, oauth=True),
        DecodeError("bad", status=200, request_id="r", body=b"{}"),
        ArgumentError("page", "must be >= 1"),
        TransportError("reset", method="GET", url="https://x.example/"),
        RequestTimeoutError("slow", method="POST", url="https://x.example/token"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_pickle_and_copy(error: OxlinError) -> None:
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(clone) is type(error)
        assert str(clone) == str(error) and vars(clone) == vars(error)
