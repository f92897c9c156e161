"""Response helpers shared by the emulator's hosts (auth, api, embed)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

try:  # orjson is optional; the emulator must also run with the stdlib alone.
    import orjson

    def dumps(data: Any) -> bytes:
        return orjson.dumps(data)

except ImportError:  # pragma: no cover - exercised only without the extra

    def dumps(data: Any) -> bytes:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


JSON_CT = "application/json"


def json_response(data: Any, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(data), status=status, content_type=JSON_CT,
                        headers=headers)


def json_error(status: int, code: str, description: str,
               headers: Mapping[str, str] | None = None) -> web.Response:
    """An error body as every host writes it: ``{"error", "error_description"}``."""
    return json_response({"error": code, "error_description": description}, status, headers)


class HTTPProblem(Exception):
    """Raised inside handlers; the server turns it into a JSON error response."""

    def __init__(self, status: int, code: str, description: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {description}")
        self.status = status
        self.code = code
        self.description = description
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return json_error(self.status, self.code, self.description, self.headers)


def bad_parameter(description: str) -> HTTPProblem:
    return HTTPProblem(400, "BAD_PARAMETER", description)


def not_found(kind: str, ident: str) -> HTTPProblem:
    return HTTPProblem(404, "RESOURCE_UNKNOWN", f"Unknown {kind} {ident}")


async def read_body(request: web.Request) -> dict[str, Any]:
    """A form or JSON body as a flat dict. Raises ValueError on a malformed or repeated field."""
    ctype = request.content_type
    if ctype == JSON_CT:
        try:
            data = json.loads(await request.read() or b"null")
        except ValueError as exc:
            raise ValueError("body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data
    form = await request.post()
    out: dict[str, Any] = {}
    for key in form:
        values = form.getall(key)
        if len(values) > 1:
            raise ValueError(f"parameter {key!r} is repeated")
        out[key] = values[0]
    return out
