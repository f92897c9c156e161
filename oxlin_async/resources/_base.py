"""What every resource service shares: a requester to send its calls through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import yarl

from .._options import RequestOptions
from .._pagination import AsyncPaginator, check_page_options
from .._transport import as_model, as_model_list

if TYPE_CHECKING:
    from .._client import Requester

T = TypeVar("T")


class Resource:
    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    def _api(self, *segments: str) -> yarl.URL:
        url = self._requester.context.environment.api_url
        for segment in segments:
            url = url / segment
        return url

    async def _get(self, model: type[T], *segments: str) -> T:
        return await self._requester.request(
            as_model(model), RequestOptions(method="GET", url=self._api(*segments)))

    def _list(self, model: type[T], path: str, params: Mapping[str, str], *, page_size: int,
              max_items: int | None, start_page: int, prefetch: int,
              max_pages: int | None = None) -> AsyncPaginator[T]:
        check_page_options(page_size, max_items, start_page, prefetch, max_pages)
        url = self._api(path)
        requester = self._requester
        base = dict(params)
        decode = as_model_list(model)

        async def fetch(page: int, limit: int) -> list[T]:
            query = {**base, "page": str(page), "limit": str(limit)}
            return await requester.request(decode, RequestOptions(method="GET", url=url,
                                                                  params=query))

        return AsyncPaginator(fetch, page_size=page_size, max_items=max_items,
                              start_page=start_page, prefetch=prefetch, max_pages=max_pages)


def clean(params: Mapping[str, Any]) -> dict[str, str]:
    """Drop the filters that were not given."""
    return {k: v for k, v in params.items() if v is not None}
