"""Connections: a user's links to banks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from .. import _params as p
from .._options import RequestOptions
from .._pagination import MAX_PAGE_SIZE, AsyncPaginator
from .._transport import as_nothing
from ..errors import SettleTimeoutError
from ..models import Connection, ConnectionStatus
from ._base import Resource, clean

SORT_FIELDS = ("creation_date", "name")


class Connections(Resource):
    def list(self, *, status: ConnectionStatus | str | None = None,
             provider_id: str | None = None, sort: str | Sequence[str] | None = None,
             page_size: int = MAX_PAGE_SIZE, max_items: int | None = None,
             start_page: int = 1, prefetch: int = 8,
             max_pages: int | None = None) -> AsyncPaginator[Connection]:
        """The user's connections (``id`` order unless `sort`, e.g. ``"-creation_date"``)."""
        params = clean({
            "status": None if status is None else p.choice("status", status, ConnectionStatus),
            "provider_id": None if provider_id is None else p.ident("provider_id", provider_id),
            "sort": None if sort is None else p.sort("sort", sort, SORT_FIELDS),
        })
        return self._list(Connection, "connections", params, page_size=page_size,
                          max_items=max_items, start_page=start_page, prefetch=prefetch,
                          max_pages=max_pages)

    async def get(self, connection_id: str) -> Connection:
        return await self._get(Connection, "connections",
                               p.ident("connection_id", connection_id))

    async def delete(self, connection_id: str) -> None:
        """Delete the connection with its accounts and their transactions."""
        await self._requester.request(as_nothing, RequestOptions(
            method="DELETE",
            url=self._api("connections", p.ident("connection_id", connection_id))))

    async def wait_until_settled(self, connection_id: str, *, timeout: float = 300.0,
                                 initial_delay: float = 2.0, max_delay: float = 30.0
                                 ) -> Connection:
        """Poll until the connection's status is no longer RUNNING (2 s, 4 s, 8 s...).

        Raises `SettleTimeoutError` (a `TimeoutError`) after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        delay = initial_delay
        while True:
            connection = await self.get(connection_id)
            if connection.status != ConnectionStatus.RUNNING:
                return connection
            left = deadline - time.monotonic()
            if left <= 0:
                raise SettleTimeoutError(
                    f"connection {connection_id} still RUNNING after {timeout:g} s")
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, max_delay)
