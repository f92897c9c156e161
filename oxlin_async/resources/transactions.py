"""Transactions: the filtered, sorted, paginated list and single reads."""

from __future__ import annotations

from collections.abc import Sequence

from .. import _params as p
from .._filters import Amount, Statuses, TransactionFilter, When
from .._pagination import MAX_PAGE_SIZE, AsyncPaginator
from ..models import AccountType, Transaction, TransactionOrigin
from ._base import Resource

SORT_FIELDS = ("date", "import_date", "amount")


class Transactions(Resource):
    def list(
        self, *, filter: TransactionFilter | None = None, account_id: str | None = None,
        account_type: AccountType | str | None = None,
        origin: TransactionOrigin | str | None = None, statuses: Statuses | None = None,
        excluded_statuses: Statuses | None = None, min_amount: Amount | None = None,
        max_amount: Amount | None = None, amount: Amount | None = None,
        start_date: When | None = None, end_date: When | None = None,
        since: When | None = None, category_id: str | None = None,
        start_import_date: When | None = None, sort: str | Sequence[str] | None = None,
        page_size: int = MAX_PAGE_SIZE, max_items: int | None = None, start_page: int = 1,
        prefetch: int = 8, max_pages: int | None = None,
    ) -> AsyncPaginator[Transaction]:
        """The user's transactions (all accounts unless `account_id`).

        The filters are those of `TransactionFilter`: pass one as `filter`, or its fields
        as keywords (both, if they name different filters). `start_import_date` is the
        older name of `since`. Without `sort` the order is import date ascending, then
        id descending.
        """
        query = TransactionFilter.of(
            filter, account_id=account_id, account_type=account_type, origin=origin,
            statuses=statuses, excluded_statuses=excluded_statuses, min_amount=min_amount,
            max_amount=max_amount, amount=amount, start_date=start_date, end_date=end_date,
            since=since, category_id=category_id, start_import_date=start_import_date,
        ).to_query()
        if sort is not None:
            query["sort"] = p.sort("sort", sort, SORT_FIELDS)
        return self._list(Transaction, "transactions", query, page_size=page_size,
                          max_items=max_items, start_page=start_page, prefetch=prefetch,
                          max_pages=max_pages)

    async def get(self, transaction_id: str) -> Transaction:
        return await self._get(Transaction, "transactions",
                               p.ident("transaction_id", transaction_id))
