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
    "PaginationError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "ServerError",
    "ServiceUnavailableError",
    "SettleTimeoutError",
    "TokenRenewalError",
    "TransportError",
    "UnexpectedStatusError",
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
_EXCERPT_SCAN = 4000
#: A key whose value is a secret, in any case (``Access_Token``, ``token``, ``id_token``;
#: not ``token_type``).
_SECRET_KEY = r"[\w.-]*(?:token|secret|password|session_id|authorization)"
# The value: a quoted string (escaped quotes included, or cut off by the excerpt), an
# array or object (up to its first closing bracket), or a bare word.
_SECRET_RE = re.compile(
    r"""(?P<k>["']?""" + _SECRET_KEY + r"""["']?\s*[:=]\s*)"""
    r"""(?P<v>"(?:[^"\\]|\\.)*(?:"|\\?$)|'(?:[^'\\]|\\.)*(?:'|\\?$)"""
    r"""|\[[^\]]*(?:\]|$)|\{[^}]*(?:\}|$)|[^"'&\s,}\]]*)""",
    re.IGNORECASE,
)


def _mask(match: re.Match[str]) -> str:
    value = match["v"]
    quote = value[:1] if value[:1] in ("'", '"') else ""
    closed = quote if len(value) > 1 and value.endswith(quote) and quote else ""
    return f"{match['k']}{quote}***{closed}"


def _excerpt(body: bytes | str | None) -> str | None:
    if body is None:
        return None
    raw = body[:_EXCERPT_SCAN]
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    text = _SECRET_RE.sub(_mask, text)
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 1] + "…"


class DecodeError(OxlinError):
    """A response body that is not what the API reference says (bad JSON, wrong shape).

    ``status`` and ``request_id`` may be filled in after construction by the layer that
    knows them; the message follows. ``excerpt`` is at most 200 characters of the body,
    with token-like values masked (None for a token answer, which is never excerpted).
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


class ResponseTooLargeError(DecodeError):
    """A response body above the client's ``max_body_size``; ``limit`` is that size in
    bytes. The rest of the body was not read."""

    def __init__(self, message: str, *, limit: int, status: int | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message, status=status, request_id=request_id)
        self.limit = limit


class TokenRenewalError(OxlinError):
    """A token could not be obtained for a reason other than an OAuth error: the token
    endpoint granted tokens that expired before they arrived (a server fault), the
    renewal ran past its deadline, or it gave up after its attempt cap. ``reason`` says
    which, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot obtain a usable token: {reason}")
        self.reason = reason


class PaginationError(OxlinError):
    """A list walk that cannot end: a full page brought nothing new or repeated the
    previous page (a server ignoring ``page``), or the walk reached ``max_pages``.
    ``page`` is the page number where it stopped."""

    def __init__(self, message: str, *, page: int) -> None:
        super().__init__(message)
        self.page = page


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


class UnexpectedStatusError(APIError):
    """A status the operation does not document (docs/oxlin-api), a redirect included:
    redirects are never followed, so no credential leaves for another URL. ``location``
    is the redirect's ``Location`` header (credentials stripped), or None."""

    def __init__(
        self,
        status: int,
        code: str | None = None,
        description: str | None = None,
        *,
        request_id: str | None = None,
        method: str | None = None,
        url: str | URL | None = None,
        location: str | None = None,
    ) -> None:
        self.location = _safe_location(location)
        super().__init__(
            status, code, description, request_id=request_id, method=method, url=url
        )

    def _message(self) -> str:
        what = (f"redirected to {self.location}, which is not followed"
                if self.location is not None and 300 <= self.status <= 399
                else "a status this operation does not document")
        msg = f"{self.status} {self.code}" if self.code else str(self.status)
        msg += f": {what}"
        if self.description:
            msg += f" ({self.description})"
        ctx = self._context()
        return f"{msg} ({', '.join(ctx)})" if ctx else msg


def _safe_location(location: str | None) -> str | None:
    if location is None:
        return None
    try:
        return _safe_url(location)[:_DESCRIPTION_CHARS]  # type: ignore[index]
    except (ValueError, TypeError):
        return "(an unreadable URL)"


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
    except (ValueError, RecursionError):  # also UnicodeDecodeError; a deep nest
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
    documented: bool = True,
    location: str | None = None,
    redact: tuple[str, ...] = (),
) -> APIError:
    """Build the exception for an error answer: by status first, by ``error`` code second.

    ``oauth=True`` is for the token endpoint, whose errors become :class:`OAuthError`
    (429 and 5xx still give :class:`RateLimitError` and :class:`ServerError`).
    ``documented=False`` (a 3xx, a 2xx the operation does not answer, a 1xx) gives
    :class:`UnexpectedStatusError` naming `location`. Each of `redact` (the secrets the
    request sent) is masked where the description echoes it, as are secret-looking values.
    """
    code, description = _parse_error_body(body)
    if description is not None:
        for secret in redact:
            if secret:
                description = description.replace(secret, "***")
        description = _SECRET_RE.sub(_mask, description)
    if not documented:
        return UnexpectedStatusError(status, code, description, request_id=request_id,
                                     method=method, url=url, location=location)
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
