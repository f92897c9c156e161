"""Check the emulator's HTTP answers against tests/data/openapi.yaml with openapi-core.

The emulator serves its three hosts under path prefixes of one local origin; the spec names
the real hosts. `SpecMapper` maps an emulator URL onto the spec's server URL for that path,
then the request and response are wrapped in openapi-core's generic `Request` / `Response`
protocols and checked by openapi-core (body schema, media type and declared headers).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.finders import APICallPathFinder
from werkzeug.datastructures import Headers, ImmutableMultiDict
from yarl import URL

SPEC_PATH = Path(__file__).parent / "data" / "openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _is_uri(value: object) -> bool:
    """The `uri` format (RFC 3986 absolute URI).

    openapi-schema-validator checks `uri` only when the optional `rfc3987` package is
    installed, which it is not here; without this, `format: uri` would be silently ignored.
    """
    if not isinstance(value, str):
        return True  # formats only constrain strings
    try:
        url = URL(value)
    except ValueError:
        return False
    return url.absolute and bool(url.scheme) and not any(c.isspace() for c in value)


@functools.cache
def openapi() -> OpenAPI:
    """The spec, loaded (and checked by openapi-spec-validator) once per test session."""
    return OpenAPI.from_file_path(str(SPEC_PATH),
                                  config=Config(extra_format_validators={"uri": _is_uri}))


def spec_operations() -> dict[str, tuple[str, str]]:
    """operationId -> (method, path template), from the spec."""
    out: dict[str, tuple[str, str]] = {}
    for path, item in (openapi().spec / "paths").str_items():
        for method in HTTP_METHODS:
            if method in item:
                out[(item / method / "operationId").read_str()] = (method, path)
    return out


def spec_statuses() -> dict[str, frozenset[int]]:
    """operationId -> the response statuses the spec lists for it."""
    paths = openapi().spec / "paths"
    return {op: frozenset(int(status) for status, _ in
                          (paths / path / method / "responses").str_items())
            for op, (method, path) in spec_operations().items()}


def _server(path: str | None = None) -> str:
    spec = openapi().spec
    servers = spec / "servers" if path is None else spec / "paths" / path / "servers"
    return (servers / 0 / "url").read_str().rstrip("/")


@dataclass(frozen=True)
class SpecMapper:
    """Emulator base URL -> spec server URL, longest emulator prefix first."""

    prefixes: tuple[tuple[str, str], ...]

    @classmethod
    def for_sandbox(cls, sandbox: Any) -> SpecMapper:
        pairs = [
            (sandbox.api_url, _server()),
            (sandbox.auth_url, _server("/token")),
            (sandbox.embed_url, _server("/widget/widget_session")),
            (sandbox.embed_origin, _server("/widget/add_connection")),
        ]
        return cls(tuple(sorted(pairs, key=lambda p: len(p[0]), reverse=True)))

    def __call__(self, url: URL) -> URL:
        raw = str(url.with_query(None).with_fragment(None))
        for local, remote in self.prefixes:
            if raw == local or raw.startswith(local + "/"):
                return URL(remote + raw[len(local):]).with_query(url.query)
        raise AssertionError(f"{url} is on none of the emulator's hosts")


@dataclass(frozen=True)
class SpecRequest:
    """openapi-core's `Request` protocol, for a request sent with aiohttp's client."""

    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str

    @classmethod
    def build(cls, method: str, url: URL, headers: Mapping[str, str],
              body: bytes | None) -> SpecRequest:
        return cls(
            host_url=str(url.origin()),
            path=url.raw_path,
            method=method.lower(),
            parameters=RequestParameters(query=ImmutableMultiDict(list(url.query.items())),
                                         header=Headers(list(headers.items()))),
            body=body,
            content_type=headers.get("Content-Type", "").lower(),
        )

    @property
    def full_url(self) -> str:
        return self.host_url + self.path


@dataclass(frozen=True)
class SpecResponse:
    """openapi-core's `Response` protocol, for what aiohttp's client received."""

    status_code: int
    headers: CIMultiDictProxy[str]
    data: bytes
    content_type: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "content_type",
                           self.headers.get("Content-Type", "").lower())

    @classmethod
    def build(cls, status: int, headers: Mapping[str, str], data: bytes) -> SpecResponse:
        return cls(status, CIMultiDictProxy(CIMultiDict(headers)), data)

    def json(self) -> Any:
        return json.loads(self.data)


def find_operation(request: SpecRequest) -> tuple[str, Any]:
    """(operationId, response definitions) of the operation the spec routes `request` to."""
    found = APICallPathFinder(openapi().spec).find(request.method, request.full_url)
    return (found.operation / "operationId").read_str(), found.operation / "responses"


def check_response(request: SpecRequest, response: SpecResponse) -> None:
    """Validate `response` (status, media type, body schema, declared headers).

    Raises openapi-core's validation error on the first mismatch. openapi-core does not
    complain about a body where the spec defines no content, so that is checked here.
    """
    openapi().validate_response(request, response)
    _, responses = find_operation(request)
    definition = responses / str(response.status_code)
    if "content" not in definition:
        assert response.data == b"", (
            f"{response.status_code} has no content in the spec, but the body is "
            f"{response.data[:200]!r}")


def check_request(request: SpecRequest) -> None:
    """Validate a request the tests send (so success cases exercise the documented form)."""
    openapi().validate_request(request)
