"""Categories: the whole list, not paginated; any valid token may read it."""

from __future__ import annotations

from .._options import RequestOptions
from .._transport import as_model_list
from ..models import Category
from ._base import Resource


class Categories(Resource):
    async def list(self) -> list[Category]:
        return await self._requester.request(
            as_model_list(Category), RequestOptions(method="GET", url=self._api("categories")))
