"""Transactions: the filtered, sorted, paginated list and single reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal

from .. import _params as p
from .._pagination import MAX_PAGE_SIZE, AsyncPaginator
from ..models import AccountType, Transaction, TransactionOrigin, TransactionStatus
from ._base import Resource, clean

SORT_FIELDS = ("date", "import_date", "amount")

Amount = Decimal | int | str
When = dt.date | dt.datetime | int
Statuses = TransactionStatus | str | Iterable[TransactionStatus | str]


def transaction_params(
    *, account_id: str | None = None, account_type: AccountType | str | None = None,
    origin: TransactionOrigin | str | None = None, statuses: Statuses | None = None,
    excluded_statuses: Statuses | None = None, min_amount: Amount | None = None,
    max_amount: Amount | None = None, amount: Amount | None = None,
    start_date: When | None = None, end_date: When | None = None,
    start_import_date: When | None = None, category_id: str | None = None,
    sort: str | Sequence[str] | None = None,
) -> dict[str, str]:
    """The query of GET /transactions; shared by `Transactions.list` and the bulk fetcher."""
    return clean({
        "account_id": None if account_id is None else p.ident("account_id", account_id),
        "account_type": None if account_type is None
        else p.choice("account_type", account_type, AccountType),
        "origin": None if origin is None else p.choice("origin", origin, TransactionOrigin),
        "included_statuses": None if statuses is None
        else p.choices("statuses", statuses, TransactionStatus),
        "excluded_statuses": None if excluded_statuses is None
        else p.choices("excluded_statuses", excluded_statuses, TransactionStatus),
        "min_amount": None if min_amount is None else p.amount("min_amount", min_amount),
        "max_amount": None if max_amount is None else p.amount("max_amount", max_amount),
        "amount": None if amount is None else p.amount("amount", amount),
        "start_date": None if start_date is None else p.start_time("start_date", start_date),
        "end_date": None if end_date is None else p.end_time("end_date", end_date),
        "start_import_date": None if start_import_date is None
        else p.start_time("start_import_date", start_import_date),
        "category_id": None if category_id is None else p.text("category_id", category_id),
        "sort": None if sort is None else p.sort("sort", sort, SORT_FIELDS),
    })


class Transactions(Resource):
    def list(
        self, *, account_id: str | None = None, account_type: AccountType | str | None = None,
        origin: TransactionOrigin | str | None = None, statuses: Statuses | None = None,
        excluded_statuses: Statuses | None = None, min_amount: Amount | None = None,
        max_amount: Amount | None = None, amount: Amount | None = None,
        start_date: When | None = None, end_date: When | None = None,
        start_import_date: When | None = None, category_id: str | None = None,
        sort: str | Sequence[str] | None = None, page_size: int = MAX_PAGE_SIZE,
        max_items: int | None = None, start_page: int = 1, prefetch: int = 8,
    ) -> AsyncPaginator[Transaction]:
        """The user's transactions (all accounts unless `account_id`).

        Dates are inclusive and apply to the transaction's `date`: a `datetime.date` means
        that whole day in Europe/Paris; datetimes must be timezone-aware. Amounts are
        signed (a 50 € debit matches ``max_amount=-50``). `statuses` keeps only those
        statuses; `excluded_statuses` drops some. Without `sort` the order is import date
        ascending, then id descending.
        """
        params = transaction_params(
            account_id=account_id, account_type=account_type, origin=origin,
            statuses=statuses, excluded_statuses=excluded_statuses, min_amount=min_amount,
            max_amount=max_amount, amount=amount, start_date=start_date, end_date=end_date,
            start_import_date=start_import_date, category_id=category_id, sort=sort)
        return self._list(Transaction, "transactions", params, page_size=page_size,
                          max_items=max_items, start_page=start_page, prefetch=prefetch)

    async def get(self, transaction_id: str) -> Transaction:
        return await self._get(Transaction, "transactions",
                               p.ident("transaction_id", transaction_id))
