"""Which hosts a client talks to."""

from __future__ import annotations

from typing import ClassVar

import attrs
import yarl


def _url(value: str | yarl.URL) -> yarl.URL:
    url = yarl.URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"not an absolute http(s) URL: {str(value)!r}")
    return url.with_path(url.path.rstrip("/"))


@attrs.frozen
class Environment:
    """The three base URLs of the service: auth (``POST /token``), api and embed.

    ``Environment.SANDBOX`` and ``Environment.PRODUCTION`` are the real hosts; an emulator
    or a proxy is ``Environment(auth_url=..., api_url=..., embed_url=...)``.
    """

    auth_url: yarl.URL = attrs.field(converter=_url)
    api_url: yarl.URL = attrs.field(converter=_url)
    embed_url: yarl.URL = attrs.field(converter=_url)

    SANDBOX: ClassVar[Environment]
    PRODUCTION: ClassVar[Environment]

    @property
    def token_url(self) -> yarl.URL:
        return self.auth_url / "token"


Environment.SANDBOX = Environment(
    auth_url="https://sandbox-auth.oxlin.io",
    api_url="https://sandbox-api.oxlin.io/v2.1",
    embed_url="https://sandbox-embed.oxlin.io/v2.1",
)
Environment.PRODUCTION = Environment(
    auth_url="https://auth.oxlin.io",
    api_url="https://api.oxlin.io/v2.1",
    embed_url="https://embed.oxlin.io/v2.1",
)
