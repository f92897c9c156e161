"""`TransactionFilter`: one definition of the transaction filters for the SDK, bulk and CLI.

The mapping to the wire and the checks are tested on the object itself; the last test
sends one filter through ``transactions.list``, ``bulk_transactions`` and the
``oxlin-async export`` command and reads the queries off the wire in front of the
emulator (a recording proxy), where all three must be the same.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import os
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from _helpers import Proxy, Truth, assert_exact, recording_proxy

import oxlin_async as ox
from oxlin_async import cli
from oxlin_async._filters import WIRE
from oxlin_async.bulk import BulkUser
from oxlin_async.testing import OxlinSandbox

PARIS = ZoneInfo("Europe/Paris")
JAN_1 = int(dt.datetime(2025, 1, 1, tzinfo=PARIS).timestamp())
JAN_31_END = int(dt.datetime(2025, 2, 1, tzinfo=PARIS).timestamp()) - 1


# ------------------------------------------------------------------------ the mapping
def test_every_filter_to_its_wire_parameter() -> None:
    f = ox.TransactionFilter(
        account_id="60000001", account_type=ox.AccountType.SAVINGS, origin="ORIGINAL",
        statuses=[ox.TransactionStatus.BOOKED, "PENDING", "BOOKED"],
        excluded_statuses="OTHER", min_amount=Decimal("-12.50"), max_amount=100,
        amount="-7.5", start_date=dt.date(2025, 1, 1), end_date=dt.date(2025, 1, 31),
        since=dt.datetime(2025, 1, 1, 12, 0, 0, 500_000, tzinfo=dt.timezone.utc),
        category_id="FOOD")
    assert f.to_query() == {
        "account_id": "60000001", "account_type": "SAVINGS", "origin": "ORIGINAL",
        "included_statuses": "BOOKED,PENDING", "excluded_statuses": "OTHER",
        "min_amount": "-12.50", "max_amount": "100", "amount": "-7.5",
        "start_date": str(JAN_1), "end_date": str(JAN_31_END),
        # an inclusive lower bound rounds up to the next whole second
        "start_import_date": str(int(dt.datetime(2025, 1, 1, 12, 0, 1,
                                                 tzinfo=dt.timezone.utc).timestamp())),
        "category_id": "FOOD",
    }
    assert ox.TransactionFilter().to_query() == {}


def test_the_table_names_every_field_once() -> None:
    fields = [a.name for a in attrs.fields(ox.TransactionFilter) if a.init]
    assert list(WIRE) == fields
    wire = [parameter for parameter, _ in WIRE.values()]
    assert len(set(wire)) == len(wire)
    assert {name for name, (parameter, _) in WIRE.items() if name != parameter} == {
        "statuses", "since"}


def test_equal_when_the_query_is_equal() -> None:
    by_day = ox.TransactionFilter(start_date=dt.date(2025, 1, 1), statuses="BOOKED")
    by_epoch = ox.TransactionFilter(start_date=JAN_1, statuses=[ox.TransactionStatus.BOOKED])
    assert by_day == by_epoch and hash(by_day) == hash(by_epoch)
    assert by_day != ox.TransactionFilter(start_date=JAN_1 + 1, statuses="BOOKED")
    assert len({by_day, by_epoch, ox.TransactionFilter()}) == 2


def test_frozen_and_a_generator_of_statuses_is_read_once() -> None:
    f = ox.TransactionFilter(statuses=(s for s in ("BOOKED", "PENDING")))
    assert f.statuses == ("BOOKED", "PENDING")
    assert f.to_query() == {"included_statuses": "BOOKED,PENDING"}
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        f.statuses = "OTHER"  # type: ignore[misc]
    assert repr(f) == "TransactionFilter(statuses=('BOOKED', 'PENDING'))"


# ------------------------------------------------------------------------- bad values
BAD: dict[str, Any] = {
    "account_id": "12a",
    "account_type": "PIGGY_BANK",
    "origin": "IMPORTED",
    "statuses": ["BOOKED", "SETTLED"],
    "excluded_statuses": [],
    "min_amount": "12,5",
    "max_amount": Decimal("NaN"),
    "amount": True,
    "start_date": "2025-01-01",
    "end_date": dt.datetime(2025, 1, 1),  # naive
    "since": 1.5,
    "category_id": "",
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_value_names_its_argument(name: str) -> None:
    assert set(BAD) == set(WIRE)  # every filter is covered
    with pytest.raises(ox.ArgumentError) as caught:
        ox.TransactionFilter(**{name: BAD[name]})
    assert caught.value.argument == name
    assert repr(name) in str(caught.value)


def test_keywords_build_and_refine_a_filter() -> None:
    base = ox.TransactionFilter(statuses="BOOKED")
    both = ox.TransactionFilter.of(base, start_date=dt.date(2025, 1, 1), amount=None)
    assert both == ox.TransactionFilter(statuses="BOOKED", start_date=dt.date(2025, 1, 1))
    assert ox.TransactionFilter.of(base) is base
    assert ox.TransactionFilter.of(start_import_date=JAN_1) == ox.TransactionFilter(
        since=JAN_1)
    with pytest.raises(ox.ArgumentError) as caught:
        ox.TransactionFilter.of(base, statuses="PENDING")
    assert caught.value.argument == "statuses"
    with pytest.raises(ox.ArgumentError) as caught:
        ox.TransactionFilter.of(since=JAN_1, start_import_date=JAN_1)
    assert caught.value.argument == "start_import_date"
    with pytest.raises(ox.ArgumentError) as caught:  # the error names the spelling used
        ox.TransactionFilter.of(start_import_date=dt.datetime(2025, 1, 1))
    assert caught.value.argument == "start_import_date"
    with pytest.raises(TypeError, match="included_statuses"):
        ox.TransactionFilter.of(included_statuses="BOOKED")
    with pytest.raises(ox.ArgumentError) as caught:
        ox.TransactionFilter.of({"statuses": "BOOKED"}, since=JAN_1)  # type: ignore[arg-type]
    assert caught.value.argument == "filter"


# ----------------------------------------------------------------------- command line
def test_each_option_is_a_filter_spelt_with_dashes() -> None:
    assert {o.name for o in cli.FILTER_OPTIONS} == set(WIRE) - {"account_id"}
    export = ["export", "--out", "tx.jsonl"]
    new = cli.build_parser().parse_args([
        *export, "--statuses", "booked,PENDING", "--excluded-statuses", "OTHER",
        "--since", "2025-01-01", "--category-id", "FOOD", "--origin", "original",
        "--account-type", "savings", "--amount", "-7.5"])
    old = cli.build_parser().parse_args([
        *export, "--status", "BOOKED,PENDING", "--exclude-status", "OTHER",
        "--since", "2025-01-01", "--category", "FOOD", "--origin", "ORIGINAL",
        "--account-type", "SAVINGS", "--amount", "-7.50"])
    want = ox.TransactionFilter(
        statuses=["BOOKED", "PENDING"], excluded_statuses="OTHER", since=dt.date(2025, 1, 1),
        category_id="FOOD", origin="ORIGINAL", account_type="SAVINGS", amount="-7.5")
    assert cli._filter(new) == want
    assert cli._filter(old).to_query() == {**want.to_query(), "amount": "-7.50"}


# ------------------------------------------------- one filter, three ways, one query
@pytest.fixture
async def proxy(sandbox: OxlinSandbox) -> AsyncIterator[Proxy]:
    async with recording_proxy(sandbox) as recording:
        yield recording


def _filters_sent(queries: list[dict[str, str]]) -> list[dict[str, str]]:
    """The filters of each query (not its account, page and page size)."""
    return [{k: v for k, v in q.items() if k not in ("account_id", "page", "limit")}
            for q in queries]


async def test_one_filter_one_query_through_list_bulk_and_cli(
        sandbox: OxlinSandbox, proxy: Proxy, tmp_path: Path) -> None:
    seeded = sandbox.users
    f = ox.TransactionFilter(statuses=["BOOKED", "PENDING"], since=dt.date(2020, 1, 1),
                             start_date=dt.date(2020, 1, 1), end_date=dt.date.today(),
                             min_amount="-250.5", max_amount=Decimal(5000),
                             origin="ORIGINAL")
    async with ox.OxlinClient(sandbox.client_id, sandbox.client_secret,
                              environment=proxy.environment) as client:
        want: Truth = {}
        for u in seeded:
            async for tx in client.as_user(u.email, u.password).transactions.list(filter=f):
                want[(u.email, tx.id)] = (tx.account_id, tx.amount)
        by_list = _filters_sent(proxy.queries)
        proxy.queries.clear()

        got: Truth = {}
        async for batch in client.bulk_transactions(
                [BulkUser.with_password(u.email, u.password) for u in seeded], filter=f):
            for tx in batch.transactions:
                got[(batch.user, tx.id)] = (tx.account_id, tx.amount)
        by_bulk = _filters_sent(proxy.queries)
        assert all("account_id" in q for q in proxy.queries)  # bulk walks each account
        proxy.queries.clear()
    assert 0 < len(want) < sum(len(list(sandbox.state.data(int(u.id)).all_transactions()))
                               for u in seeded)  # the filter keeps some, not all
    assert_exact(got, want)

    users = tmp_path / "users.csv"
    users.write_text("".join(f"{u.email},{u.password}\n" for u in seeded), encoding="utf-8")
    env = {**os.environ, "OXLIN_CLIENT_ID": sandbox.client_id,
           "OXLIN_CLIENT_SECRET": sandbox.client_secret}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oxlin_async", "export", "--users", str(users),
        "--out", str(tmp_path / "tx.csv"), "--quiet",
        "--auth-url", str(proxy.environment.auth_url),
        "--api-url", str(proxy.environment.api_url),
        "--embed-url", str(proxy.environment.embed_url),
        "--statuses", "BOOKED,PENDING", "--since", "2020-01-01", "--start-date", "2020-01-01",
        "--end-date", dt.date.today().isoformat(), "--min-amount", "-250.5",
        "--max-amount", "5000", "--origin", "ORIGINAL", env=env,
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    by_cli = _filters_sent(proxy.queries)

    assert by_list and by_bulk and by_cli
    for sent in (by_list, by_bulk, by_cli):
        assert all(q == f.to_query() for q in sent), sent
    with (tmp_path / "tx.csv").open(encoding="utf-8", newline="") as rows:
        assert {(r["user"], r["id"]) for r in csv.DictReader(rows)} == set(want)
