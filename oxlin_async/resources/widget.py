"""Widget sessions: the embed host's entry to the add-connection flow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._options import RequestOptions
from .._transport import as_model
from ..models import WidgetSession
from ._base import Resource

if TYPE_CHECKING:
    from .._client import UserClient


class Widget(Resource):
    _requester: UserClient

    async def create_session(self, *, captive_mode: bool | None = None) -> WidgetSession:
        """A widget session for this user; open ``add_connection_url(...)`` in a browser."""
        requester = self._requester
        # The user token rides in the form body here, next to the client credentials; the
        # transport renews it and replays once on a 401 as for any other call.
        options = RequestOptions(
            method="POST", url=requester.context.environment.embed_url / "widget" /
            "widget_session", data={},
            params=None if captive_mode is None else {"captive_mode": str(captive_mode).lower()},
            idempotent=True, auth=requester.widget_auth)
        return await requester.request(as_model(WidgetSession), options)
