"""The emulator's account and connection lists over real HTTP: filters, sorts, pages
(docs/oxlin-api §7-§9), against expectations computed from the ground truth."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import attrs
import pytest
from _api import (
    ACCOUNT_KEYS,
    ACCOUNT_STATUSES,
    ACCOUNT_TYPES,
    Api,
    expected_accounts,
    expected_connections,
    ids,
    money,
    paged,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oxlin_async.testing import OxlinSandbox, UserData, load_testbank
from oxlin_async.testing._records import Account
from oxlin_async.testing._testbank import apply_testbank


# --- accounts and connections --------------------------------------------------------------
@attrs.frozen
class Rich:
    """A user with 12 accounts over two connections (one FAILED), plus three test-bank
    connections created in the same second (ties on name, creation_date and balance)."""

    api: Api
    token: str
    data: UserData


@pytest.fixture
async def rich(http: aiohttp.ClientSession) -> AsyncIterator[Rich]:
    async with OxlinSandbox(users=8, seed=5, accounts_per_user=12,
                            transactions_per_account=2) as box:
        user_id = int(box.users[7].id)
        apply_testbank(box.state, user_id, load_testbank("fr/hermione_granger"))
        apply_testbank(box.state, user_id, load_testbank("fr/harry_potter"))
        apply_testbank(box.state, user_id, load_testbank("fr/harry_potter"), channel="REDIRECT")
        api = Api(http, box)
        yield Rich(api, await api.user_token(7, "accounts_read"), box.state.data(user_id))


def _accounts(rich: Rich) -> list[Account]:
    return list(rich.data.accounts.values())


ACCOUNT_CASES: dict[str, Callable[[Rich], dict[str, str]]] = {
    "connection_id": lambda r: {"connection_id": str(list(r.data.connections)[1])},
    **{f"type-{t}": (lambda r, t=t: {"type": t}) for t in ACCOUNT_TYPES},
    "status-ACTIVE": lambda r: {"status": "ACTIVE"},
    "status-rare": lambda r: {"status": next(a.status for a in _accounts(r)
                                             if a.status != "ACTIVE")},
    "status-MANUAL-none": lambda r: {"status": "MANUAL"},
    "usage-PROFESSIONAL": lambda r: {"usage": "PROFESSIONAL"},
    "usage-PERSONAL": lambda r: {"usage": "PERSONAL"},
    "q-name-other-case": lambda r: {"q": "pRÊt"},
    "q-name-lower": lambda r: {"q": "livret"},
    "q-account-number": lambda r: {"q": next(a.account_number for a in _accounts(r)
                                             if a.type == "LOAN")[3:8]},
    "q-card-number": lambda r: {"q": "xxxx " + next(
        a.account_number for a in _accounts(r) if a.type == "CREDIT_CARD")[-4:]},
    "q-iban-lower": lambda r: {"q": next(a.iban for a in _accounts(r)
                                         if a.iban and a.type == "SAVINGS")[:12].lower()},
    "q-none": lambda r: {"q": "no such account"},
    "combination": lambda r: {"connection_id": str(next(iter(r.data.connections))),
                              "type": "CREDIT_CARD", "status": "ACTIVE"},
    "unknown-connection-none": lambda r: {"connection_id": "999"},
    **{f"sort-{s}": (lambda r, s=s: {"sort": s}) for s in (
        "name", "-name", "creation_date", "-creation_date", "balance", "-balance",
        "-creation_date,name", "balance,-name", "name,-balance,creation_date")},
    "sort-with-filter": lambda r: {"sort": "-name", "usage": "PERSONAL"},
}


async def test_account_filters_and_sorts(rich: Rich) -> None:
    for case, build in ACCOUNT_CASES.items():
        params = build(rich)
        expected = expected_accounts(rich.data, params)
        got = await rich.api.all_pages("/accounts", rich.token, **params)
        assert ids(got) == expected, (case, params)
        if case.endswith("-none"):
            assert expected == [], case
        elif not case.startswith("sort-") or case == "sort-with-filter":
            assert 0 < len(expected) < len(rich.data.accounts), (case, params)
        for item in got:
            assert money(item["balance"]) == rich.data.accounts[int(item["id"])].balance_cents


async def test_account_name_sort_is_case_insensitive(rich: Rich) -> None:
    got = ids(await rich.api.all_pages("/accounts", rich.token, sort="name"))
    by_id = rich.data.accounts
    names = [by_id[i].name for i in got]
    assert names == sorted(names, key=str.casefold)
    assert names != sorted(names), "the data do not tell case-insensitive from not"
    # Ties (the same name, the same creation date, the same balance) come in id order.
    for field in ("name", "creation_date", "balance"):
        got = ids(await rich.api.all_pages("/accounts", rich.token, sort=f"-{field}"))
        keys = [ACCOUNT_KEYS[field](by_id[i]) for i in got]
        tied = [(a, b) for a, b, ka, kb in zip(got, got[1:], keys, keys[1:], strict=False)
                if ka == kb]
        assert tied, field
        assert all(a < b for a, b in tied)


async def test_accounts_pagination(rich: Rich) -> None:
    full = expected_accounts(rich.data, {"sort": "-balance"})
    pages = []
    for page in range(1, 10):
        items = ids(await rich.api.ok("/accounts", rich.token, sort="-balance", limit="5",
                                      page=str(page)))
        pages += items
        if len(items) < 5:
            break
    assert pages == full
    assert ids(await rich.api.ok("/accounts", rich.token, limit="1")) == sorted(
        rich.data.accounts)[:1]
    assert await rich.api.ok("/accounts", rich.token, page="99") == []


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draw=st.data())
async def test_random_account_queries_match_the_ground_truth(rich: Rich,
                                                             draw: st.DataObject) -> None:
    accounts = _accounts(rich)
    words = sorted({w for a in accounts for w in (a.name or "").split()}
                   | {(a.iban or "")[4:9] for a in accounts} | {"", "X", "é"})
    values: dict[str, st.SearchStrategy[str]] = {
        "connection_id": st.sampled_from([*map(str, rich.data.connections), "1"]),
        "type": st.sampled_from(ACCOUNT_TYPES),
        "status": st.sampled_from(ACCOUNT_STATUSES),
        "usage": st.sampled_from(("PERSONAL", "PROFESSIONAL")),
        "q": st.sampled_from(words).map(lambda w: w.swapcase() if len(w) % 2 else w),
    }
    names = draw.draw(st.lists(st.sampled_from(sorted(values)), max_size=3, unique=True))
    params = {name: draw.draw(values[name], label=name) for name in names}
    fields = draw.draw(st.lists(st.sampled_from(sorted(ACCOUNT_KEYS)), max_size=3,
                                unique=True))
    if fields:
        params["sort"] = ",".join(("-" if draw.draw(st.booleans()) else "") + f
                                  for f in fields)
    params["limit"] = str(draw.draw(st.integers(1, 20), label="limit"))
    params["page"] = str(draw.draw(st.integers(1, 3), label="page"))
    got = ids(await rich.api.ok("/accounts", rich.token, **params))
    assert got == paged(expected_accounts(rich.data, params), params), params


CONNECTION_CASES: list[dict[str, str]] = [
    {}, {"status": "SUCCESS"}, {"status": "FAILED"}, {"status": "RUNNING"},
    {"provider_id": "9999"}, {"provider_id": "nope"}, {"status": "SUCCESS", "provider_id": "9999"},
    {"sort": "name"}, {"sort": "-name"}, {"sort": "creation_date"}, {"sort": "-creation_date"},
    {"sort": "-creation_date,name"}, {"sort": "name,-creation_date"},
    {"sort": "-name", "status": "SUCCESS"},
]


async def test_connection_filters_and_sorts(rich: Rich) -> None:
    assert len(rich.data.connections) == 5
    for params in CONNECTION_CASES:
        expected = expected_connections(rich.data, params)
        got = ids(await rich.api.all_pages("/connections", rich.token, **params))
        assert got == expected, params
        if params.get("status") == "RUNNING" or params.get("provider_id") == "nope":
            assert got == []
        elif "provider_id" in params or "status" in params:
            assert 0 < len(got) < len(rich.data.connections), params


async def test_connection_statuses_and_ties(rich: Rich) -> None:
    statuses = {c.status for c in rich.data.connections.values()}
    assert {"SUCCESS", "FAILED"} <= statuses
    # A closed connection shows up under status=CLOSED.
    closed = next(iter(rich.data.connections.values()))
    closed.closed = True
    assert ids(await rich.api.ok("/connections", rich.token, status="CLOSED")) == [closed.id]
    # The three test-bank connections tie on name and creation date: id ascending.
    bank = [c.id for c in rich.data.connections.values() if c.provider_id == "9999"]
    for sort in ("name", "-name", "creation_date", "-creation_date"):
        got = ids(await rich.api.ok("/connections", rich.token, sort=sort))
        assert [i for i in got if i in bank] == sorted(bank)
    got = ids(await rich.api.ok("/connections", rich.token, limit="1", page="2"))
    assert got == [sorted(rich.data.connections)[1]]
    assert ids(await rich.api.ok("/connections", rich.token, limit="2", page="3")) == [
        max(rich.data.connections)]
    assert await rich.api.ok("/connections", rich.token, limit="2", page="4") == []
