"""Categories: the whole list, not paginated; any valid token may read it."""

from __future__ import annotations

from ..models import Category
from ._base import Resource


class Categories(Resource):
    async def list(self) -> list[Category]:
        response = await self._scope.request("GET", self._api("categories"))
        return response.decode_list(Category)
