"""What one API call is: `RequestOptions`, built once and handed down to the transport.

A call's options say everything the transport needs (method, URL, query, body, whether
a replay is safe, how it is authenticated, which extra limits it holds, where it counts
its traffic); what to decode the body into travels next to them as ``cast_to`` (see
`Transport.request`). `Outgoing` is one attempt's copy, which an `Auth` signs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import yarl

from ._retry import IDEMPOTENT_METHODS

if TYPE_CHECKING:
    from ._auth import Auth


@attrs.define
class RequestStats:
    """Counts of one logical job's traffic, e.g. one user in a bulk run: pass it as
    ``user_client.with_options(stats=...)`` and every request of that view counts here."""

    requests: int = 0
    retries: int = 0
    token_requests: int = 0


def _default_idempotent(options: RequestOptions) -> bool:
    return options.method in IDEMPOTENT_METHODS


def _default_expect(options: RequestOptions) -> frozenset[int]:
    # What the reference documents as success (docs/oxlin-api, openapi.yaml): 204 for
    # every DELETE, 200 for the rest; POST /users says 201 itself.
    return frozenset({204}) if options.method == "DELETE" else frozenset({200})


@attrs.frozen(kw_only=True)
class RequestOptions:
    """One API call. `idempotent` defaults by method (PATCH is not, unless told so);
    `limits` are extra semaphores held while on the wire (a bulk job's global and
    per-user bounds), acquired in order before the client's own; `oauth` marks the token
    endpoint, whose errors are OAuth errors. `expect` are the success statuses the
    operation documents; any other status that is not a 4xx or 5xx (a redirect, an
    undocumented 2xx) is an `UnexpectedStatusError`."""

    method: str
    url: yarl.URL
    params: Mapping[str, str] | None = None
    json: Any = None
    data: Mapping[str, str] | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    idempotent: bool = attrs.field(
        default=attrs.Factory(_default_idempotent, takes_self=True))
    auth: Auth | None = None
    limits: tuple[asyncio.Semaphore, ...] = ()
    stats: RequestStats | None = None
    oauth: bool = False
    expect: frozenset[int] = attrs.field(
        default=attrs.Factory(_default_expect, takes_self=True))


@attrs.define
class Outgoing:
    """One attempt's request as it goes on the wire; an `Auth` writes its credentials in."""

    method: str
    url: yarl.URL
    params: Mapping[str, str] | None
    headers: dict[str, str]
    json: Any
    data: dict[str, str] | None
    #: the answer carries secrets (a token answer): never excerpted into an error
    secret: bool = False

    @classmethod
    def of(cls, options: RequestOptions) -> Outgoing:
        return cls(options.method, options.url, options.params, dict(options.headers),
                   options.json, None if options.data is None else dict(options.data),
                   options.oauth)
