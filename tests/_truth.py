"""Ground truth for exports: every seeded transaction as (user, id) -> (account, amount)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from oxlin_async.testing import OxlinSandbox
from oxlin_async.testing._records import Transaction as Record

#: (user key, transaction id) -> (account id, amount)
Truth = dict[tuple[str, str], tuple[str, Decimal]]


def amount_of(record: Record) -> Decimal:
    return Decimal(record.amount_cents).scaleb(-2)


def records(box: OxlinSandbox, keep: Callable[[Record], bool] = lambda r: True
            ) -> dict[str, list[Record]]:
    """Each seeded user's transactions (that `keep` accepts), by e-mail."""
    return {user.email: [t for t in box.state.data(int(user.id)).all_transactions() if keep(t)]
            for user in box.users}


def truth(box: OxlinSandbox, keep: Callable[[Record], bool] = lambda r: True,
          only: Iterable[str] | None = None) -> Truth:
    wanted = None if only is None else set(only)
    return {(email, str(t.id)): (str(t.account_id), amount_of(t))
            for email, txs in records(box, keep).items()
            if wanted is None or email in wanted for t in txs}


def assert_exact(got: Truth, want: Truth) -> None:
    """Same (user, id) pairs, same accounts and amounts: nothing lost, added or altered."""
    assert len(got) == len(want)
    missing, extra = want.keys() - got.keys(), got.keys() - want.keys()
    assert not missing and not extra, (f"{len(missing)} missing, e.g. {sorted(missing)[:3]}; "
                                       f"{len(extra)} extra, e.g. {sorted(extra)[:3]}")
    wrong = [k for k in want if got[k] != want[k]]
    assert not wrong, [(k, got[k], want[k]) for k in wrong[:5]]
    assert all(isinstance(amount, Decimal) for _, amount in got.values())
