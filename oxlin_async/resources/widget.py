"""Widget sessions: the embed host's entry to the add-connection flow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import AuthenticationError
from ..models import WidgetSession
from ._base import Resource

if TYPE_CHECKING:
    from .._client import UserClient


class Widget(Resource):
    _scope: UserClient

    async def create_session(self, *, captive_mode: bool | None = None) -> WidgetSession:
        """A widget session for this user; open ``add_connection_url(...)`` in a browser."""
        scope = self._scope
        core = scope.core
        url = core.environment.embed_url / "widget" / "widget_session"
        params = None if captive_mode is None else {"captive_mode": str(captive_mode).lower()}
        for attempt in (1, 2):
            token = await scope.tokens.get()
            form = {"client_id": core.client_id, "client_secret": core.client_secret,
                    "access_token": token.access_token}
            try:
                response = await core.session.request("POST", url, data=form, params=params,
                                                      idempotent=True)
            except AuthenticationError as error:
                # The user token rides in the body here: renew it and replay once.
                if attempt == 2 or error.code != "invalid_token":
                    raise
                scope.tokens.invalidate(token)
                continue
            return response.decode(WidgetSession)
        raise AssertionError("unreachable")
