"""The OpenAPI checks have teeth: hand-made answers that break the contract are rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _openapi import (
    SpecRequest,
    SpecResponse,
    check_response,
)
from openapi_core.exceptions import OpenAPIError
from yarl import URL

REDIRECT = "https://app.example/callback"
ALL_READ = "openid profile accounts_read transactions_read"
#: injected status -> (Faults field, error code the spec requires)
FAULTS = {429: ("rate_429", "TOO_MANY_REQUESTS"), 500: ("rate_500", "INTERNAL_ERROR"),
          503: ("rate_503", "SERVICE_UNAVAILABLE")}




# The checks have teeth: hand-made answers that break the contract are rejected.
_API = "https://sandbox-api.oxlin.io/v2.1"
_RID = {"X-Request-ID": "r1"}
_JSON = {"Content-Type": "application/json", **_RID}


def _err(code: str) -> bytes:
    return json.dumps({"error": code, "error_description": "x"}).encode()


BROKEN = {
    "no_request_id": ("GET", f"{_API}/categories", 200, {"Content-Type": "application/json"},
                      b"[]"),
    "401_without_www_authenticate": ("GET", f"{_API}/categories", 401, _JSON,
                                     _err("invalid_token")),
    "401_basic_challenge_on_api": ("GET", f"{_API}/categories", 401,
                                   {**_JSON, "WWW-Authenticate": 'Basic realm="oxlin"'},
                                   _err("invalid_token")),
    "wrong_error_code": ("GET", f"{_API}/accounts/1", 404, _JSON, _err("NOT_FOUND")),
    "429_without_retry_after": ("GET", f"{_API}/accounts", 429, _JSON,
                                _err("TOO_MANY_REQUESTS")),
    "retry_after_not_seconds": ("GET", f"{_API}/accounts", 503,
                                {**_JSON, "Retry-After": "soon"}, _err("SERVICE_UNAVAILABLE")),
    "undocumented_status": ("GET", f"{_API}/categories", 405, _JSON, _err("METHOD")),
    "html_instead_of_json": ("GET", f"{_API}/categories", 200,
                             {"Content-Type": "text/html", **_RID}, b"[]"),
    "location_not_v2_1": ("POST", f"{_API}/users", 201, {**_RID, "Location": "/users/1"},
                          b""),
    "body_on_204": ("DELETE", f"{_API}/users/1", 204, _RID, b"{}"),
    "null_optional_field": ("GET", f"{_API}/users/me", 200, _JSON,
                            b'{"id":"1","email":"a@b.co","creation_date":1,"first_name":null}'),
    "iso_timestamp": ("GET", f"{_API}/users/me", 200, _JSON,
                      b'{"id":"1","email":"a@b.co","creation_date":"2024-01-01T00:00:00Z"}'),
    "relative_widget_link": (
        "POST", "https://sandbox-embed.oxlin.io/v2.1/widget/widget_session", 200, _JSON,
        b'{"session_id":"s","_links":{"add_connection":"/widget/add_connection?session_id=s"}}'),
    "token_cache_control": ("POST", "https://sandbox-auth.oxlin.io/token", 200,
                            {**_JSON, "Cache-Control": "max-age=60"},
                            b'{"access_token":"a","token_type":"Bearer","expires_in":1,'
                            b'"scope":""}'),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_checker_rejects(name: str) -> None:
    method, url, status, headers, body = BROKEN[name]
    request = SpecRequest.build(method, URL(url), {}, None)
    with pytest.raises((OpenAPIError, AssertionError)):
        check_response(request, SpecResponse.build(status, headers, body))


def test_the_shipped_reference_and_the_test_copy_agree() -> None:
    """docs/oxlin-api/openapi.yaml is what the code cites; tests/data/ is what it is tested
    against: one changed without the other would test against a stale contract."""
    root = Path(__file__).parent.parent
    shipped = (root / "docs" / "oxlin-api" / "openapi.yaml").read_bytes()
    assert shipped == (Path(__file__).parent / "data" / "openapi.yaml").read_bytes()
