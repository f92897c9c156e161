"""Quick decode benchmark: one page of 500 transactions, bytes -> models.

Compares the SDK's converter (orjson and stdlib JSON paths) with pydantic v2's
``TypeAdapter.validate_json`` on an equivalent model. Run:

    python -m benchmarks.decode_quick [--items 500] [--rounds 200] [--no-gc]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import random
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import cattrs

from oxlin_async import _convert
from oxlin_async.models import (
    Transaction,
    TransactionOrigin,
    TransactionStatus,
    TransactionType,
)

LABELS = [
    "CB CARREFOUR MARKET 12/12",
    "PRELEVEMENT FREE MOBILE",
    "VIREMENT RECU DE M. POTTER",
    "France Télécom",
    "RETRAIT DAB 14/12 PARIS",
    "CB SNCF INTERNET",
]


def make_page(n: int, seed: int = 1) -> bytes:
    """A page shaped like the emulator's, with a few optional fields here and there."""
    rnd = random.Random(seed)
    sync = 1639998109
    items = []
    for i in range(n):
        day = 1639954800 - 86400 * (i // 7)
        cents = rnd.randint(-250_000, 150_000)
        item: dict[str, Any] = {
            "id": str(2433482741 + n - i),
            "account_id": "63723418",
            "amount": cents // 100 if cents % 100 == 0 else cents / 100,
            "currency": "EUR",
            "label": rnd.choice(LABELS),
            "type": "DEBIT" if cents < 0 else "CREDIT",
            "origin": "TRANSACTION",
            "status": "BOOKED",
            "category_id": rnd.choice(["UNCATEGORIZED", "SUPERMARKET", "TELECOM"]),
            "date": day,
            "import_date": sync,
            "value_date": day,
            "booking_date": day,
            "last_update_date": sync,
            "remittance_information": [rnd.choice(LABELS)],
        }
        if i % 10 == 0:
            item["notes"] = "Remboursement\nà vérifier"
        if i % 25 == 0:
            item["source"] = {"label": "CARTE X1234"}
        if i % 50 == 0:
            item["some_new_field"] = {"nested": [1, 2, 3]}  # extra fields must be ignored
        items.append(item)
    return json.dumps(items, ensure_ascii=False).encode()


def bench(cases: list[tuple[str, Callable[[], object]]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each case; the cases take turns so that machine noise hits
    them alike."""
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for i in range(rounds + 5):
        for name, fn in cases:
            t0 = time.perf_counter()
            fn()
            if i >= 5:  # warm-up
                times[name].append(time.perf_counter() - t0)
    return times


def cattrs_reference() -> Callable[[list[Any]], list[Transaction]]:
    """The same rules with cattrs' own generated class functions: what the converter's
    generated hooks replace."""
    conv = _convert._configure(
        cattrs.Converter(detailed_validation=False, forbid_extra_keys=False),
        _convert._detailed_class_hook,
    )
    hook = conv.get_structure_hook(Transaction)
    return lambda data: [hook(item, Transaction) for item in data]


def pydantic_adapter() -> Callable[[bytes], object] | None:
    try:
        import pydantic
    except ImportError:
        return None

    class PSource(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(frozen=True, extra="ignore")
        label: str | None = None

    class PTransaction(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(frozen=True, extra="ignore")
        id: str
        account_id: str
        amount: Decimal
        currency: str
        label: str
        type: TransactionType | str
        origin: TransactionOrigin | str
        status: TransactionStatus | str
        category_id: str
        date: dt.datetime
        import_date: dt.datetime
        notes: str | None = None
        value_date: dt.datetime | None = None
        booking_date: dt.datetime | None = None
        transaction_date: dt.datetime | None = None
        last_update_date: dt.datetime | None = None
        remittance_information: tuple[str, ...] = ()
        source: PSource | None = None
        original_trx_id: str | None = None
        check_number: str | None = None

    return pydantic.TypeAdapter(list[PTransaction]).validate_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument(
        "--no-gc", action="store_true", help="disable the garbage collector while timing"
    )
    args = parser.parse_args()
    n, rounds = args.items, args.rounds
    body = make_page(n)

    ours = _convert.structure_list(_convert.loads(body), Transaction)
    stdlib = _convert.structure_list(_convert._loads_stdlib(body), Transaction)
    assert ours == stdlib, "both JSON paths must decode to equal models"
    assert len(ours) == n

    cases: list[tuple[str, Callable[[], object]]] = []
    if _convert.orjson is not None:
        cases.append(("oxlin_async (orjson)", lambda: _convert.structure_list(
            _convert.orjson.loads(body), Transaction)))
        cases.append(("  of which orjson.loads", lambda: _convert.orjson.loads(body)))
    cases.append(("oxlin_async (stdlib json)", lambda: _convert.structure_list(
        _convert._loads_stdlib(body), Transaction)))
    if _convert.orjson is not None:
        plain_cattrs = cattrs_reference()
        assert plain_cattrs(_convert.orjson.loads(body)) == ours
        cases.append(("  cattrs make_dict_structure_fn", lambda: plain_cattrs(
            _convert.orjson.loads(body))))
    validate = pydantic_adapter()
    if validate is not None:
        result = validate(body)
        assert [t.amount for t in result] == [t.amount for t in ours]  # type: ignore[attr-defined]
        cases.append(("pydantic TypeAdapter.validate_json", lambda: validate(body)))

    if args.no_gc:
        gc.disable()
    times = bench(cases, rounds)
    gc.enable()
    gc_state = "off" if args.no_gc else "on"
    print(f"{n} transactions, {len(body) / 1024:.0f} KiB, {rounds} rounds, gc {gc_state}; "
          "µs per transaction")
    print(f"{'':36} {'median':>8} {'best':>8}")
    for name, _ in cases:
        ts = times[name]
        print(f"{name:36} {statistics.median(ts) * 1e6 / n:8.2f} {min(ts) * 1e6 / n:8.2f}")
    if validate is not None and _convert.orjson is not None:
        ours, theirs = times["oxlin_async (orjson)"], times["pydantic TypeAdapter.validate_json"]
        ratio = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
        print(f"median per-round ratio oxlin_async (orjson) / pydantic: {ratio:.2f}")


if __name__ == "__main__":
    main()
