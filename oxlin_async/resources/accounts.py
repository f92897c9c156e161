"""Accounts: listing, reading, archiving."""

from __future__ import annotations

from collections.abc import Sequence

from .. import _params as p
from .._options import RequestOptions
from .._pagination import MAX_PAGE_SIZE, AsyncPaginator
from .._transport import as_model
from ..models import Account, AccountStatus, AccountType, AccountUsage
from ._base import Resource, clean

SORT_FIELDS = ("name", "creation_date", "balance")


class Accounts(Resource):
    def list(self, *, connection_id: str | None = None, type: AccountType | str | None = None,
             status: AccountStatus | str | None = None,
             usage: AccountUsage | str | None = None, q: str | None = None,
             sort: str | Sequence[str] | None = None, page_size: int = MAX_PAGE_SIZE,
             max_items: int | None = None, start_page: int = 1,
             prefetch: int = 8, max_pages: int | None = None) -> AsyncPaginator[Account]:
        """The user's accounts, CLOSED ones included unless `status` filters.

        `q` matches a case-insensitive substring of the name, number or IBAN.
        """
        params = clean({
            "connection_id": None if connection_id is None
            else p.ident("connection_id", connection_id),
            "type": None if type is None else p.choice("type", type, AccountType),
            "status": None if status is None else p.choice("status", status, AccountStatus),
            "usage": None if usage is None else p.choice("usage", usage, AccountUsage),
            "q": None if q is None else p.text("q", q),
            "sort": None if sort is None else p.sort("sort", sort, SORT_FIELDS),
        })
        return self._list(Account, "accounts", params, page_size=page_size,
                          max_items=max_items, start_page=start_page, prefetch=prefetch,
                          max_pages=max_pages)

    async def get(self, account_id: str) -> Account:
        return await self._get(Account, "accounts", p.ident("account_id", account_id))

    async def archive(self, account_id: str) -> Account:
        """Stop synchronising the account (status CLOSED); its transactions stay."""
        return await self._set_status(account_id, AccountStatus.CLOSED)

    async def unarchive(self, account_id: str) -> Account:
        """Resume synchronising the account (status ACTIVE)."""
        return await self._set_status(account_id, AccountStatus.ACTIVE)

    async def _set_status(self, account_id: str, status: AccountStatus) -> Account:
        # Setting a status is idempotent, so this PATCH may be retried.
        return await self._requester.request(as_model(Account), RequestOptions(
            method="PATCH", url=self._api("accounts", p.ident("account_id", account_id)),
            json={"status": status.value}, idempotent=True))
