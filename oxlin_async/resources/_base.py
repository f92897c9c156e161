"""What every resource service shares: a scope to send requests through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import yarl

from .._pagination import AsyncPaginator, check_page_options
from .._session import Response

if TYPE_CHECKING:
    from .._client import Scope

T = TypeVar("T")


class Resource:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    def _api(self, *segments: str) -> yarl.URL:
        url = self._scope.core.environment.api_url
        for segment in segments:
            url = url / segment
        return url

    async def _get(self, model: type[T], *segments: str) -> T:
        response = await self._scope.request("GET", self._api(*segments),
                                             decode=lambda r: r.decode(model))
        return response.value  # type: ignore[no-any-return]

    def _list(self, model: type[T], path: str, params: Mapping[str, str], *, page_size: int,
              max_items: int | None, start_page: int, prefetch: int) -> AsyncPaginator[T]:
        check_page_options(page_size, max_items, start_page, prefetch)
        url = self._api(path)
        scope = self._scope
        base = dict(params)

        def decode(response: Response) -> list[T]:
            return response.decode_list(model)

        async def fetch(page: int, limit: int) -> list[T]:
            query = {**base, "page": str(page), "limit": str(limit)}
            response = await scope.request("GET", url, params=query, decode=decode)
            return response.value  # type: ignore[no-any-return]

        return AsyncPaginator(fetch, page_size=page_size, max_items=max_items,
                              start_page=start_page, prefetch=prefetch)


def clean(params: Mapping[str, Any]) -> dict[str, str]:
    """Drop the filters that were not given."""
    return {k: v for k, v in params.items() if v is not None}
