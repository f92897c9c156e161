"""The SDK's exception hierarchy.

Every exception raised on purpose by the SDK derives from :class:`OxlinError`.
Messages carry what a support ticket needs (status, error code, method, URL, request id)
and never a request body, a header or a token.
"""

from __future__ import annotations

import json
import re
from typing import Any

from yarl import URL

__all__ = [
    "APIError",
    "ArgumentError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "DecodeError",
    "InternalServerError",
    "InvalidClientError",
    "InvalidGrantError",
    "NotFoundError",
    "OAuthError",
    "OxlinError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "ServiceUnavailableError",
    "SettleTimeoutError",
    "TransportError",
    "api_error_from_response",
]


def _restore(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class OxlinError(Exception):
    """Root of every exception the SDK raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The subclasses take keyword-only arguments, which the default
        # reduce (``cls(*self.args)``) cannot replay: pickling would break.
        return (_restore, (type(self), self.args, self.__dict__))


class ArgumentError(OxlinError, ValueError):
    """A bad argument, detected before any request was sent."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"invalid argument {argument!r}: {problem}")
        self.argument = argument


def _safe_url(url: str | URL | None) -> str | None:
    if url is None:
        return None
    # Credentials embedded in a URL (user:password@host) must not reach a log.
    u = url if isinstance(url, URL) else URL(url)
    if u.user is not None or u.password is not None:
        u = u.with_user(None)
    return str(u)


class TransportError(OxlinError):
    """The request did not get an HTTP answer (connection refused, reset, dropped...)."""

    def __init__(self, message: str, *, method: str, url: str | URL) -> None:
        self.method = method
        self.url: str = _safe_url(url) or ""
        super().__init__(f"{message} ({method} {self.url})")


class RequestTimeoutError(TransportError):
    """The request timed out before a complete answer arrived."""


_EXCERPT_CHARS = 200
# Token answers carry secrets; a wrong-shaped one must not leak them into an excerpt.
_SECRET_RE = re.compile(
    r"""(?P<k>["']?(?:access_token|refresh_token|id_token|client_secret|password|session_id)["']?)"""
    r"""(?P<sep>\s*[:=]\s*["']?)[^"'&\s,}]*"""
)


def _excerpt(body: bytes | str | None) -> str | None:
    if body is None:
        return None
    text = body if isinstance(body, str) else body[:4000].decode("utf-8", "replace")
    text = _SECRET_RE.sub(r"\g<k>\g<sep>***", text[:4000])
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 1] + "…"


class DecodeError(OxlinError):
    """A response body that is not what the API reference says (bad JSON, wrong shape).

    ``status`` and ``request_id`` may be filled in after construction by the layer that
    knows them; the message follows. ``excerpt`` is at most 200 characters of the body,
    with token-like values masked.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        body: bytes | str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.excerpt = _excerpt(body)

    def __str__(self) -> str:
        ctx = []
        if self.status is not None:
            ctx.append(f"status {self.status}")
        if self.request_id is not None:
            ctx.append(f"request_id={self.request_id}")
        return f"{self.message} ({', '.join(ctx)})" if ctx else self.message


class APIError(OxlinError):
    """The server answered with an error status.

    ``code`` is the body's ``error`` field and ``description`` its ``error_description``;
    both are None when the body is not the documented JSON (a proxy's HTML page, say).
    """

    def __init__(
        self,
        status: int,
        code: str | None = None,
        description: str | None = None,
        *,
        request_id: str | None = None,
        method: str | None = None,
        url: str | URL | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.description = description
        self.request_id = request_id
        self.method = method
        self.url = _safe_url(url)
        super().__init__(self._message())

    def _context(self) -> list[str]:
        ctx = []
        if self.method or self.url:
            ctx.append(" ".join(p for p in (self.method, self.url) if p))
        if self.request_id:
            ctx.append(f"request_id={self.request_id}")
        return ctx

    def _message(self) -> str:
        msg = f"{self.status} {self.code}" if self.code else str(self.status)
        if self.description:
            msg += f": {self.description}"
        ctx = self._context()
        return f"{msg} ({', '.join(ctx)})" if ctx else msg


class _WithRetryAfter(APIError):
    def __init__(
        self,
        status: int,
        code: str | None = None,
        description: str | None = None,
        *,
        request_id: str | None = None,
        method: str | None = None,
        url: str | URL | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            status, code, description, request_id=request_id, method=method, url=url
        )

    def _context(self) -> list[str]:
        ctx = super()._context()
        if self.retry_after is not None:
            ctx.append(f"retry_after={self.retry_after:g}s")
        return ctx


class BadRequestError(APIError):
    """400: a bad parameter or body (``BAD_PARAMETER``)."""


class AuthenticationError(APIError):
    """401: the access token is missing, unknown or expired (``invalid_token``)."""


class PermissionDeniedError(APIError):
    """403: the token lacks the scope, or the resource is another user's."""


class NotFoundError(APIError):
    """404: unknown id, or another user's resource (``RESOURCE_UNKNOWN``)."""


class ConflictError(APIError):
    """409: the resource exists already (``CONFLICT``)."""


class RateLimitError(_WithRetryAfter):
    """429: rate limited; ``retry_after`` is the server's ``Retry-After`` in seconds."""


class ServerError(APIError):
    """Any 5xx answer."""


class InternalServerError(ServerError):
    """500: server failure (``INTERNAL_ERROR``)."""


class ServiceUnavailableError(_WithRetryAfter, ServerError):
    """503: maintenance or overload; ``retry_after`` when the server sent one."""


class OAuthError(APIError):
    """An RFC 6749 §5.2 error from the token endpoint (``invalid_request``,
    ``invalid_scope``, ``unsupported_grant_type``...)."""


class InvalidGrantError(OAuthError):
    """``invalid_grant``: wrong password, deleted user, or a used or foreign refresh token."""


class InvalidClientError(OAuthError):
    """``invalid_client``: the client id or secret is missing or wrong."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
    500: InternalServerError,
    503: ServiceUnavailableError,
}
_BY_CODE: dict[str, type[APIError]] = {
    "BAD_PARAMETER": BadRequestError,
    "invalid_request": BadRequestError,
    "invalid_token": AuthenticationError,
    "insufficient_scope": PermissionDeniedError,
    "RESOURCE_UNKNOWN": NotFoundError,
    "CONFLICT": ConflictError,
    "TOO_MANY_REQUESTS": RateLimitError,
    "INTERNAL_ERROR": InternalServerError,
    "SERVICE_UNAVAILABLE": ServiceUnavailableError,
}
_OAUTH_BY_CODE: dict[str, type[OAuthError]] = {
    "invalid_grant": InvalidGrantError,
    "invalid_client": InvalidClientError,
}
_DESCRIPTION_CHARS = 500


def _parse_error_body(body: bytes) -> tuple[str | None, str | None]:
    try:
        data = json.loads(body)
    except ValueError:  # also UnicodeDecodeError
        return None, None
    if not isinstance(data, dict):
        return None, None
    code = data.get("error")
    description = data.get("error_description")
    return (
        code if isinstance(code, str) and code else None,
        description[:_DESCRIPTION_CHARS] if isinstance(description, str) else None,
    )


def _classify(status: int, code: str | None, oauth: bool) -> type[APIError]:
    cls = _BY_STATUS.get(status)
    if cls is None and 500 <= status <= 599:
        cls = ServerError
    if oauth and not (cls is not None and issubclass(cls, (RateLimitError, ServerError))):
        return _OAUTH_BY_CODE.get(code or "", OAuthError)
    by_code = _BY_CODE.get(code or "")
    if cls is None:
        return by_code or APIError
    # The code may only narrow what the status says, never contradict it.
    if by_code is not None and issubclass(by_code, cls):
        return by_code
    return cls


def api_error_from_response(
    status: int,
    body: bytes,
    *,
    request_id: str | None = None,
    method: str | None = None,
    url: str | URL | None = None,
    retry_after: float | None = None,
    oauth: bool = False,
) -> APIError:
    """Build the exception for an error answer: by status first, by ``error`` code second.

    ``oauth=True`` is for the token endpoint, whose errors become :class:`OAuthError`
    (429 and 5xx still give :class:`RateLimitError` and :class:`ServerError`).
    """
    code, description = _parse_error_body(body)
    cls = _classify(status, code, oauth)
    if issubclass(cls, _WithRetryAfter):
        return cls(
            status,
            code,
            description,
            request_id=request_id,
            method=method,
            url=url,
            retry_after=retry_after,
        )
    return cls(status, code, description, request_id=request_id, method=method, url=url)


class SettleTimeoutError(OxlinError, TimeoutError):
    """A connection was still synchronising (RUNNING) when the wait ran out."""
