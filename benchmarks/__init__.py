"""Benchmarks of oxlin-async against baselines measured in the same process and run.

Run ``python -m benchmarks`` from the repository root (see ``benchmarks/README.md``).
This module holds what the benchmarks share: options, medians, target checks, the
realistic transaction generator, and a helper to run a server in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import attrs

# ----------------------------------------------------------------------------- options


@attrs.define
class Options:
    quick: bool = False
    repeats: int = 5
    profile: bool = False

    def pick(self, full: Any, quick: Any) -> Any:
        """`full` normally, `quick` under --quick."""
        return quick if self.quick else full


# ---------------------------------------------------------------------------- figures


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda v, t: v >= t,
    "<=": lambda v, t: v <= t,
    "==": lambda v, t: v == t,
}


def target(name: str, value: float, op: str, goal: float, *, unit: str = "",
           note: str = "") -> dict[str, Any]:
    """One target: the measured value, the goal, and whether it is met."""
    ok = bool(_OPS[op](value, goal))
    return {"name": name, "value": value, "op": op, "target": goal, "unit": unit,
            "pass": ok, "note": note}


def fmt(value: float, digits: int = 2) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()
                                  and abs(value) >= 1):
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def print_targets(targets: list[dict[str, Any]]) -> None:
    for t in targets:
        verdict = "PASS" if t["pass"] else "MISS"
        unit = f" {t['unit']}" if t["unit"] else ""
        line = (f"  {verdict}  {t['name']}: {fmt(t['value'])}{unit}"
                f"   (target {t['op']} {fmt(t['target'])}{unit})")
        if t["note"]:
            line += f"  [{t['note']}]"
        print(line, flush=True)


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in header]] + [[c if isinstance(c, str) else fmt(c) for c in row]
                                          for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        first = row[0].ljust(widths[0])
        rest = "  ".join(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        print(f"  {first}  {rest}", flush=True)
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths), flush=True)


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 74 - len(title)), flush=True)


# ------------------------------------------------------------------ realistic data
# Transactions are rendered with the emulator's own record (`to_json`), so the bytes have
# exactly the shape the emulator (and the reference) serve: string ids, amounts as JSON
# numbers with at most two decimals, epoch-second timestamps, enum strings, optional
# fields present or absent as in real data.

ACCOUNT_ID = 63723418
FIRST_TX_ID = 2_433_482_741
_CITIES = ("PARIS", "LYON", "MARSEILLE", "TOULOUSE", "NANTES", "LILLE", "BORDEAUX")
_LABELS = (
    ("CARTE X{card} CARREFOUR MARKET {city}", "SUPERMARKET", "POINT_OF_SALE", -18000, -400),
    ("PAIEMENT CB MONOPRIX {city}", "SUPERMARKET", "POINT_OF_SALE", -9000, -200),
    ("CB BOULANGERIE PAUL {city}", "SNAKS_ANDWORK_MEALS", "POINT_OF_SALE", -1500, -100),
    ("PRLV SEPA FREE MOBILE", "TELECOM", "DIRECT_DEBIT", -2000, -200),
    ("PRLV SEPA EDF CLIENTS PARTICULIERS", "HOUSING", "DIRECT_DEBIT", -16000, -3500),
    ("RETRAIT DAB {city}", "DAILY_LIFE", "ATM", -30000, -2000),
    ("VIR SEPA RECU /DE ACME SAS /MOTIF SALAIRE", "SALARY", "DIRECT_DEPOSIT", 140000, 480000),
    ("VIREMENT RECU DE CAMILLE DUBOIS", "INCOME", "POTENTIAL_TRANSFER", 1000, 90000),
    ("CHEQUE N°{num}", "DAILY_LIFE", "CHECK", -40000, -1000),
    ("FRAIS TENUE DE COMPTE", "SERVICES", "BANK_FEE", -800, -100),
    ("CARTE X{card} ZARA {city}", "DRESSING", "CREDIT_CARD_PAYMENT", -15000, -1500),
    ("OPERATION DIVERSE {num}", "UNCATEGORIZED", "OTHER", -6000, -100),
)
_STATUSES = ("BOOKED",) * 86 + ("PENDING",) * 8 + ("OTHER", "EXPIRED", "REJECTED",
                                                     "CANCELLED", "REFUNDED", "BOOKED")
_ORIGINS = ("TRANSACTION",) * 20 + ("ORIGINAL", "ORIGINAL", "RECURRING", "UPCOMING",
                                    "SCHEDULED")
_NOTES = ("Remboursé par Paul", "à vérifier", "note de frais", "Vacances 🏖")
_DAY = 86_400
_LAST_MIDNIGHT = 1_732_575_600  # a Paris midnight (2024-11-26 00:00 CET)


def _word(i: int, seed: int) -> int:
    """A well-mixed 64-bit word for item `i` (splitmix64): deterministic per index."""
    z = (i * 0x9E3779B97F4A7C15 + seed * 0xBF58476D1CE4E5B9 + 1) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


_MASK = (1 << 64) - 1


def transaction_records(start: int, count: int, *, total: int, seed: int = 1,
                        account_id: int = ACCOUNT_ID, first_id: int = FIRST_TX_ID
                        ) -> list[Any]:
    """Emulator records of items `start` .. `start+count-1` of a list of `total`: as real
    as the API's, every field drawn per item.

    Deterministic per index (any page size gives the same items), oldest first (the
    default order is import date ascending), ids descending and distinct. Each item has
    its own import instant (spread over the day after its date, to the second) and its
    own last update (the import, or hours to weeks later); labels carry per-item
    numbers, cities and card digits; amounts have 0, 1 or 2 decimals; optional fields
    (value and booking dates, last update, notes) are present or absent.
    """
    from oxlin_async.testing._records import Transaction

    out = []
    for i in range(start, min(start + count, total)):
        w, v = _word(i, seed), _word(i, seed + 7919)
        label, category, kind, low, high = _LABELS[w % len(_LABELS)]
        if "{" in label:
            label = label.format(card=f"{(w >> 20) % 10000:04d}", city=_CITIES[(w >> 8) % 7],
                                 num=1_000_000 + (w >> 12) % 9_000_000)
        cents = low + (w >> 36) % (high - low + 1)
        decimals = (w >> 56) % 8
        if decimals == 0:
            cents -= cents % 100  # whole euros: written without decimals
        elif decimals == 1:
            cents -= cents % 10  # e.g. 12.5
        day = _LAST_MIDNIGHT - _DAY * ((total - i) * 730 // max(total, 1))
        # Imports arrive in the day after the transaction, each at its own second, in
        # the order of the list (the default sort is import date ascending).
        imported = day + _DAY + (i * 730 * 86_000 // max(total, 1)) % 86_000 + (w >> 40) % 7
        status = _STATUSES[v % len(_STATUSES)]
        updated = (None if (v >> 44) % 10 == 0 else
                   imported if (v >> 48) % 3 == 0 else imported + (v >> 50) % (30 * _DAY))
        out.append(Transaction(
            id=first_id + total - i, account_id=account_id, amount_cents=cents,
            currency="EUR", label=label,
            type=kind if (v >> 8) % 3 == 0 else ("DEBIT" if cents < 0 else "CREDIT"),
            origin=_ORIGINS[(v >> 12) % len(_ORIGINS)], status=status,
            category_id=category if (v >> 20) % 10 else "UNCATEGORIZED",
            date=day, import_date=imported,
            value_date=None if (v >> 24) % 16 == 0 else day + _DAY * ((v >> 28) % 4 // 2),
            booking_date=None if status == "PENDING" else day, last_update_date=updated,
            notes=_NOTES[(v >> 40) % 4] if (v >> 32) % 32 == 0 else None))
    return out


def render_page(start: int, count: int, *, total: int, seed: int = 1) -> bytes:
    """Items `start` .. `start+count-1` of a list of `total`, as one page's body (a bare
    JSON array), exactly as the emulator renders them (`to_json` + its `dumps`), every
    item drawn on its own (`transaction_records`)."""
    from oxlin_async.testing._http import dumps

    return dumps([rec.to_json() for rec in transaction_records(start, count, total=total,
                                                               seed=seed)])


_TEMPLATES: list[tuple[dict[str, Any], tuple[tuple[str, int], ...]]] = []
_TEMPLATE_COUNT = 4096


def _templates() -> list[tuple[dict[str, Any], tuple[tuple[str, int], ...]]]:
    """`to_json` of 4096 records, each with its timestamps as offsets from its date."""
    if not _TEMPLATES:
        for rec in transaction_records(0, _TEMPLATE_COUNT, total=_TEMPLATE_COUNT):
            rec.import_date = rec.date + _DAY + 4 * 3600 + 1234  # one import time a day
            rec.last_update_date = rec.import_date
            body = rec.to_json()
            stamps = tuple((k, body[k] - rec.date) for k in
                           ("date", "import_date", "value_date", "booking_date",
                            "last_update_date") if k in body)
            _TEMPLATES.append((body, stamps))
    return _TEMPLATES


def render_repeated_page(start: int, count: int, *, total: int, seed: int = 1) -> bytes:
    """The previous benchmark data, kept for "(info)" rows only: each item is one of 4096
    records rendered once, picked by a hash of its index, with its own id but timestamps
    shared by the day (one import time a day), so decoders' caches hit far more than on
    real data."""
    from oxlin_async.testing._http import dumps

    templates = _templates()
    out = []
    for i in range(start, min(start + count, total)):
        body, stamps = templates[_word(i, seed) % _TEMPLATE_COUNT]
        item = dict(body)
        item["id"] = str(FIRST_TX_ID + total - i)
        day = _LAST_MIDNIGHT - _DAY * ((total - i) * 730 // max(total, 1))
        for key, offset in stamps:
            item[key] = day + offset
        out.append(item)
    return dumps(out)


# ------------------------------------------------------------ a child process
# Servers run in another process so that their CPU does not count against the client's
# (the machine has two cores). Children are spawned (not forked: the parent may hold an
# event loop and threads) and speak over a pipe: they send ("ready", info) once, then
# answer each (command, argument) with one reply until "stop".

_CTX = multiprocessing.get_context("spawn")
C = TypeVar("C", bound="Child")


class Child:
    def __init__(self, target: Callable[..., None], *args: Any, timeout: float = 300) -> None:
        self._conn, child_conn = _CTX.Pipe()
        self.process = _CTX.Process(target=target, args=(child_conn, *args), daemon=True)
        self.process.start()
        child_conn.close()
        if not self._conn.poll(timeout):
            self.process.kill()
            raise RuntimeError(f"{target.__name__} did not start within {timeout} s")
        kind, self.info = self._conn.recv()
        if kind != "ready":
            raise RuntimeError(f"{target.__name__} failed to start: {self.info}")

    def call(self, command: str, argument: Any = None, timeout: float = 600) -> Any:
        self._conn.send((command, argument))
        if not self._conn.poll(timeout):
            raise RuntimeError(f"no answer to {command!r} within {timeout} s")
        kind, value = self._conn.recv()
        if kind == "error":
            raise RuntimeError(f"{command!r} failed in the child: {value}")
        return value

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError, RuntimeError):
            self.call("stop", timeout=10)
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self._conn.close()

    def __enter__(self: C) -> C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def serve_commands(conn: multiprocessing.connection.Connection,
                         handlers: dict[str, Callable[[Any], Any]]) -> None:
    """In a child: answer commands from the pipe until "stop" (handlers may be async)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            command, argument = await loop.run_in_executor(None, conn.recv)
        except EOFError:
            return
        if command == "stop":
            conn.send(("ok", None))
            return
        try:
            result = handlers[command](argument)
            if asyncio.iscoroutine(result):
                result = await result
            conn.send(("ok", result))
        except Exception as exc:  # reported to the parent, which raises it
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def child_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def sched_seconds(pid: int | None = None) -> tuple[float, float]:
    """(CPU time, time spent runnable but waiting for a CPU) of a process's main thread,
    from Linux's /proc/PID/schedstat; (nan, nan) elsewhere. The second figure is what
    the other processes of this shared machine cost us."""
    try:
        with open(f"/proc/{pid or 'self'}/schedstat") as f:
            run_ns, wait_ns = f.read().split()[:2]
        return int(run_ns) / 1e9, int(wait_ns) / 1e9
    except (OSError, ValueError):
        return float("nan"), float("nan")


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# ------------------------------------------------------------ memory sampling


class PeakRSS:
    """Samples this process's RSS every `interval` seconds in a thread; keeps the peak."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil  # type: ignore[import-untyped,unused-ignore]

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.start_rss = self.rss()
        self.peak = self.start_rss
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.rss()
            self.samples += 1
            if value > self.peak:
                self.peak = value
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def maxrss_bytes() -> int:
    import resource

    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


# ------------------------------------------------------------ profiling


@contextlib.contextmanager
def maybe_profile(enabled: bool, title: str, out: dict[str, Any],
                  top: int = 18) -> Iterator[None]:
    """Under --profile: cProfile the block, print the top functions by own time and
    keep them in `out["profile"]`."""
    if not enabled:
        yield
        return
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats("tottime").print_stats(top)
        text = buf.getvalue()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
        table = "\n".join(lines[start:])
        print(f"\n  cProfile of {title} (top {top} by own time):")
        print("\n".join("    " + ln for ln in table.splitlines()), flush=True)
        out.setdefault("profile", {})[title] = table


def now_stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


__all__ = [
    "ACCOUNT_ID",
    "FIRST_TX_ID",
    "Child",
    "Options",
    "PeakRSS",
    "child_cpu_seconds",
    "fmt",
    "load_average",
    "maxrss_bytes",
    "maybe_profile",
    "median",
    "now_stamp",
    "print_table",
    "print_targets",
    "render_page",
    "render_repeated_page",
    "sched_seconds",
    "section",
    "serve_commands",
    "target",
    "transaction_records",
]
