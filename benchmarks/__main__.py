"""``python -m benchmarks [--quick] [--only NAME[,NAME]] [--json PATH] [--profile]``

Runs the benchmarks (walk, decode, bulk, stampede, memory, scale, ratelimit), prints each
one's figures with its targets and PASS/MISS, and writes everything to a JSON file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

from . import Options, load_average, now_stamp, section

BENCHMARKS = ("walk", "decode", "bulk", "stampede", "memory", "scale", "ratelimit")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("oxlin-async", "aiohttp", "orjson", "cattrs", "attrs", "pydantic",
                 "pydantic-core", "msgspec", "psutil"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: smaller sizes, 3 repeats")
    parser.add_argument("--only", default="",
                        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", default=os.path.join("benchmarks", "results", "latest.json"),
                        help="where to write the results (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per measure (default 5, 3 with --quick)")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one extra run of the SDK's side and print the "
                             "top functions (not counted in the figures)")
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; "
                     f"choose from {', '.join(BENCHMARKS)}")
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    opts = Options(quick=args.quick, repeats=repeats, profile=args.profile)

    started = time.perf_counter()
    meta = {
        "date": now_stamp(),
        "mode": "quick" if args.quick else "full",
        "repeats": repeats,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": _versions(),
        "note": "ratios are measured in the same process and run; the machine is shared",
    }
    print(f"oxlin-async benchmarks, {meta['mode']} run, {repeats} repeats, {meta['date']}")
    print(f"python {meta['python']} on {meta['platform']}, {meta['cpu_count']} CPUs "
          "(shared, noisy: compare ratios, not absolute figures)", flush=True)

    results: dict[str, Any] = {}
    for name in chosen:
        module = importlib.import_module(f"benchmarks.{name}")
        t0 = time.perf_counter()
        load_before = load_average()
        try:
            results[name] = module.run(opts)
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "targets": []}
        results[name]["elapsed_s"] = time.perf_counter() - t0
        results[name]["load_average_before"] = load_before
        results[name]["load_average_after"] = load_average()
        print(f"  ({name}: {results[name]['elapsed_s']:.0f} s; load average before "
              f"{load_before}, after {results[name]['load_average_after']})", flush=True)

    meta["elapsed_s"] = time.perf_counter() - started
    section("summary")
    met = missed = 0
    for name in chosen:
        res = results[name]
        if "error" in res:
            print(f"  ERROR {name}: {res['error']}")
            missed += 1
            continue
        for t in res["targets"]:
            verdict = "PASS" if t["pass"] else "MISS"
            met += t["pass"]
            missed += not t["pass"]
            unit = f" {t['unit']}" if t["unit"] else ""
            value = t["value"]
            shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
            print(f"  {verdict}  {name}: {t['name']} = {shown}{unit} "
                  f"(target {t['op']} {t['target']:g}{unit})")
    print(f"\n  {met} met, {missed} missed; total {meta['elapsed_s']:.0f} s")

    path = args.json
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "benchmarks": results}, f, indent=2, default=str)
    print(f"  results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
