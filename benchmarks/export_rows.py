"""``python -m benchmarks.export_rows [--transactions N] [--repeats R]``: what the export's
writers cost per transaction, without the network: realistic pages (`render_page`)
decoded as the export decodes them (`decode_rows`, no models), then each format's
``write`` over all of them, timed in process CPU (median of the repeats). This is the
export's share of client CPU beyond fetching and decoding (see README, "bulk")."""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import yarl

from oxlin_async import _export
from oxlin_async._transport import Response
from oxlin_async.bulk import _ROW_READS, Batch
from oxlin_async.models import Account, Transaction

from . import median, print_table, render_page

PAGE = 500
_ACCOUNT = (b'[{"id": "2", "connection_id": "3", "name": "n", "type": "CHECKINGS", '
            b'"status": "ACTIVE", "currency": "EUR", "balance": 1, '
            b'"balance_date": 1639998109, "creation_date": 1639998109}]')


def pages(count: int) -> list[Batch]:
    url = yarl.URL("http://h/v2.1/transactions")
    account = Response(200, {}, _ACCOUNT, "GET", url).decode_list(Account)[0]
    return [Batch("someone@example.com", account,
                  Response(200, {}, render_page(start, PAGE, total=count), "GET", url
                           ).decode_rows(Transaction, _ROW_READS),
                  "42", {"PETS": "Animaux", "DAILY_LIFE": "Vie quotidienne"})
            for start in range(0, count, PAGE)]


def cpu_per_transaction(fmt: str, batches: list[Batch], folder: str) -> float:
    writer = _export.open_writer(fmt, os.path.join(folder, f"out.{fmt}"), resume_offset=None)
    try:
        t0 = time.process_time()
        for batch in batches:
            writer.write(batch)
        writer.commit()
        spent = time.process_time() - t0
    finally:
        writer.close()
    os.remove(os.path.join(folder, f"out.{fmt}" + (".part" if fmt != "sqlite" else "")))
    return spent * 1e6 / sum(len(b.transactions) for b in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    batches = pages(args.transactions)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for fmt in ("jsonl", "csv", "sqlite"):
            runs = [cpu_per_transaction(fmt, batches, folder) for _ in range(args.repeats)]
            rows.append([fmt, median(runs), min(runs)])
    print(f"  export writers, {args.transactions:,} realistic transactions in pages of "
          f"{PAGE}, rows and writing only (no network, no decoding)")
    print_table(["format", "client CPU µs/tx (median)", "best"], rows)


if __name__ == "__main__":
    main()
