"""decode: microseconds per transaction to turn one 500-item JSON page (bytes) into
typed objects, the same bytes for every decoder. The pages are realistic (every item
drawn on its own: its own import and update instants...); each round decodes the next of
16 such pages (8,000 items), so that no decoder's cache of repeated values can make a
page look cheaper than a real walk's.

* oxlin-async: what a page request does with the body, ``Response.decode_list``: msgspec
  wire structs then the frozen attrs models when the ``speed`` extra is installed (the
  "(info)" rows show the converter alone, over orjson and over the stdlib json module);
  ``Decimal`` amounts, aware UTC datetimes, enum-or-str fields;
* pydantic v2: ``TypeAdapter(list[PTransaction]).validate_json`` with a frozen model that
  mirrors ``Transaction`` (Decimal, datetimes from epoch ints, ``Enum | str`` unions);
* msgspec: ``msgspec.json.decode(body, type=list[MTransaction], strict=False)`` with a
  frozen Struct of the same fields (Decimal; ``strict=False`` is what lets msgspec read
  epoch ints as datetimes). msgspec cannot express ``Enum | str`` unions, so its
  enum-like fields are plain ``str``: it does a little less work than the others;
* plain orjson dicts (``orjson.loads``): the floor, untyped.

The decoders take turns within each round so machine noise hits them alike; each of the
runs is a block of rounds and reports medians; the ratio is taken per run.
"""

# No `from __future__ import annotations`: msgspec and pydantic resolve the local
# classes' annotations, which must be real objects.

import datetime as dt
import gc
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from . import (
    Options,
    median,
    print_table,
    print_targets,
    render_page,
    render_repeated_page,
    section,
    target,
)

NAME = "decode"
ITEMS = 500
PAGES = 16


def pydantic_decoder() -> Callable[[bytes], list[Any]]:
    import pydantic

    from oxlin_async.models import TransactionOrigin, TransactionStatus, TransactionType

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


def msgspec_decoder() -> Callable[[bytes], list[Any]]:
    import msgspec

    class MSource(msgspec.Struct, frozen=True):
        label: str | None = None

    class MTransaction(msgspec.Struct, frozen=True):
        id: str
        account_id: str
        amount: Decimal
        currency: str
        label: str
        type: str
        origin: str
        status: str
        category_id: str
        date: dt.datetime
        import_date: dt.datetime
        notes: str | None = None
        value_date: dt.datetime | None = None
        booking_date: dt.datetime | None = None
        transaction_date: dt.datetime | None = None
        last_update_date: dt.datetime | None = None
        remittance_information: tuple[str, ...] = ()
        source: MSource | None = None
        original_trx_id: str | None = None
        check_number: str | None = None

    decoder = msgspec.json.Decoder(list[MTransaction], strict=False)
    return decoder.decode


def _check_same(ours: list[Any], other: list[Any], name: str) -> None:
    """The decoders must agree on the values (else the comparison is meaningless)."""
    assert len(ours) == len(other) == ITEMS, name
    for a, b in zip(ours, other, strict=True):
        for field in ("id", "amount", "date", "import_date", "value_date", "booking_date",
                      "notes", "label"):
            if getattr(a, field) != getattr(b, field):
                raise AssertionError(f"{name} differs on {field}: {getattr(a, field)!r} "
                                     f"vs {getattr(b, field)!r}")
        if str(a.type) != str(b.type):
            raise AssertionError(f"{name} differs on type")
        if hasattr(b, "remittance_information"):  # row records have the row's fields only
            assert tuple(a.remittance_information) == tuple(b.remittance_information)


def run(opts: Options) -> dict[str, Any]:
    section("decode: µs per transaction, one 500-item page (bytes) -> typed objects")
    import orjson
    import yarl

    from oxlin_async import _convert
    from oxlin_async._transport import Response
    from oxlin_async.bulk import _ROW_READS
    from oxlin_async.models import Transaction

    bodies = [render_page(i * ITEMS, ITEMS, total=200_000) for i in range(PAGES)]
    old_body = render_repeated_page(0, ITEMS, total=200_000)
    body = bodies[0]
    url = yarl.URL("http://127.0.0.1/v2.1/transactions")

    def ours_fn() -> list[Any]:
        return Response(200, {}, body, "GET", url).decode_list(Transaction)

    def ours_rows() -> list[Any]:
        return Response(200, {}, body, "GET", url).decode_rows(Transaction, _ROW_READS)

    def ours_converter() -> list[Any]:
        return _convert.structure_list(_convert.loads(body), Transaction)

    def ours_stdlib() -> list[Any]:
        return _convert.structure_list(_convert._loads_stdlib(body), Transaction)

    def ours_old() -> list[Any]:
        return Response(200, {}, old_body, "GET", url).decode_list(Transaction)

    pyd, msg = pydantic_decoder(), msgspec_decoder()
    cases: dict[str, Callable[[], Any]] = {
        "oxlin-async (Response.decode_list)": ours_fn,
        "pydantic v2 TypeAdapter.validate_json": lambda: pyd(body),
        "msgspec json.decode (Struct)": lambda: msg(body),
        "orjson.loads (dicts, untyped)": lambda: orjson.loads(body),
        "(info) oxlin-async rows, no models (bulk models=False)": ours_rows,
        "(info) oxlin-async, converter over orjson": ours_converter,
        "(info) oxlin-async, stdlib json path": ours_stdlib,
        "(info) oxlin-async on the previous (repeated) data": ours_old,
        "(info) pydantic v2 on the previous (repeated) data": lambda: pyd(old_body),
    }
    ours_key, pyd_key = "oxlin-async (Response.decode_list)", \
        "pydantic v2 TypeAdapter.validate_json"
    ours = ours_fn()
    _check_same(ours, ours_rows(), "oxlin-async rows")
    _check_same(ours, pyd(body), "pydantic")
    _check_same(ours, msg(body), "msgspec")
    _check_same(ours, ours_stdlib(), "oxlin-async stdlib path")
    _check_same(ours, ours_converter(), "oxlin-async converter")
    assert isinstance(ours[0], Transaction)

    rounds = opts.pick(60, 25)
    warmup = 5
    per_run: dict[str, list[float]] = {k: [] for k in cases}
    ratios: list[float] = []
    for _ in range(opts.repeats):
        times: dict[str, list[float]] = {k: [] for k in cases}
        for i in range(rounds + warmup):
            body = bodies[i % PAGES]  # the next page: fresh values for every decoder
            for name, fn in cases.items():  # turns: noise hits every decoder alike
                t0 = time.perf_counter()
                fn()
                if i >= warmup:
                    times[name].append(time.perf_counter() - t0)
        gc.collect()
        for name in cases:
            per_run[name].append(median(times[name]) * 1e6 / ITEMS)
        # per round ratio, then the run's median: robust to a noisy round
        ratios.append(median([a / b for a, b in zip(times[ours_key], times[pyd_key],
                                                    strict=True)]))
    med = {k: median(v) for k, v in per_run.items()}
    best = {k: min(v) for k, v in per_run.items()}
    print(f"  {ITEMS} transactions a page, {len(body) / 1024:.0f} KiB, {PAGES} pages in turn;"
          f" {opts.repeats} runs of {rounds} rounds (gc on); µs per transaction")
    print_table(["decoder", "median µs/tx", "best run µs/tx", "vs pydantic"],
                [[k, med[k], best[k], f"{med[k] / med[pyd_key]:.2f}x"] for k in cases])
    ratio = median(ratios)
    out: dict[str, Any] = {
        "items": ITEMS, "body_bytes": len(body), "rounds": rounds, "repeats": opts.repeats,
        "us_per_tx_runs": per_run, "median_us_per_tx": med, "ratio_runs": ratios,
        "targets": [target("oxlin-async µs/tx / pydantic µs/tx (median of per-run ratios)",
                           ratio, "<=", 0.5, unit="x",
                           note=f"ours {med[ours_key]:.2f} µs/tx, pydantic "
                                f"{med[pyd_key]:.2f} µs/tx")],
    }
    print()
    print_targets(out["targets"])
    return out
