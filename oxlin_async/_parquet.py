"""The Parquet writer (the ``parquet`` extra: pyarrow), with the Arrow schema of the row
contract (`oxlin_async._rows.arrow_schema`).

Pages become Parquet row groups of `ROW_GROUP` rows as they arrive (memory holds at most
one row group), in a file under a temporary name, renamed when the run ends: one file,
or with an ``--out`` ending in ``/``, a directory of parts of at most `PART_ROWS` rows.

A Parquet file is readable only once its footer is written, at the end; so each page
also goes to ``<out>.part``, an Arrow IPC stream, which a kill leaves readable up to the
offset the checkpoint recorded. A resumed run keeps from it the rows of finished accounts
(and drops the others, as the JSON Lines writer does) and writes them again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Collection, Iterator
from typing import IO, TYPE_CHECKING, Any

from ._rows import ACCOUNT_KEY, Kind, Page, arrow_schema, encoder

if TYPE_CHECKING:
    from .bulk import Checkpoint, UserReport

#: rows per Parquet row group
ROW_GROUP = 128 * 1024
#: rows per file of a directory of parts
PART_ROWS = 1024 * 1024

# Arrow takes Decimal, date and aware datetime as they are; enums as their text.
_arrow_rows = encoder({Kind.ENUM: str})


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ValueError("the parquet format needs pyarrow: "
                         "pip install 'oxlin-async[parquet]'") from None
    return pyarrow


class ParquetWriter:
    def __init__(self, path: str, *, resume_offset: int | None,
                 finished: Collection[tuple[str, str]] | None = None) -> None:
        self._pa = pa = _pyarrow()
        self.schema = arrow_schema()
        self.directory = path.endswith(("/", os.sep))
        self.path = path.rstrip("/" + os.sep) if self.directory else path
        self.part = self.path + ".part"
        self._target = self.path + ".tmp"  # the Parquet output, until the run ends
        self._out: Any = None  # the open Parquet file (the current part)
        self._parts = 0  # parts closed
        self._rows_in_part = 0
        self._pending: list[Any] = []  # record batches of the next row group
        self._pending_rows = 0
        kept: list[Any] = []
        if resume_offset is not None and os.path.exists(self.part):
            kept = list(self._finished_batches(resume_offset, finished or ()))
        if self.directory:
            shutil.rmtree(self._target, ignore_errors=True)
            os.mkdir(self._target)
        self._file: IO[bytes] = open(self.part + ".tmp", "wb")  # noqa: SIM115
        self._stream = pa.ipc.new_stream(self._file, self.schema)
        for batch in kept:
            self._add(batch)
        self._file.flush()
        os.replace(self.part + ".tmp", self.part)  # the open file keeps its place

    def _finished_batches(self, offset: int, finished: Collection[tuple[str, str]]
                          ) -> Iterator[Any]:
        """The rows of `finished` accounts among the stream's first `offset` bytes."""
        pa = self._pa
        with open(self.part, "rb") as f:
            data = f.read(offset)
        with contextlib.suppress(pa.ArrowInvalid, OSError):  # a torn or empty stream
            for batch in pa.ipc.open_stream(data):
                users, accounts = (batch.column(name).to_pylist() for name in ACCOUNT_KEY)
                mask = [key in finished for key in zip(users, accounts, strict=True)]
                if any(mask):
                    yield batch.filter(pa.array(mask))

    # ---------------------------------------------------------------- row groups, parts
    def _room(self) -> int:
        left = ROW_GROUP - self._pending_rows
        if self.directory:
            left = min(left, PART_ROWS - self._rows_in_part - self._pending_rows)
        return left

    def _add(self, batch: Any) -> None:
        """Into the stream, and into row groups as they fill."""
        self._stream.write_batch(batch)
        while batch.num_rows:
            head = batch.slice(0, self._room())
            self._pending.append(head)
            self._pending_rows += head.num_rows
            batch = batch.slice(head.num_rows)
            if self._room() == 0:
                self._flush()

    def _flush(self) -> None:
        pa, pq = self._pa, self._pa.parquet
        if self._out is None:
            name = (os.path.join(self._target, f"part-{self._parts:05d}.parquet")
                    if self.directory else self._target)
            self._out = pq.ParquetWriter(name, self.schema)
        self._out.write_table(pa.Table.from_batches(self._pending, schema=self.schema),
                              row_group_size=ROW_GROUP)
        self._rows_in_part += self._pending_rows
        self._pending, self._pending_rows = [], 0
        if self.directory and self._rows_in_part >= PART_ROWS:
            self._out.close()
            self._out, self._parts, self._rows_in_part = None, self._parts + 1, 0

    # ---------------------------------------------------------------- the Writer protocol
    def write(self, page: Page) -> None:
        rows = _arrow_rows(page)
        if not rows:
            return
        pa = self._pa
        columns = zip(*rows, strict=True)
        arrays = [pa.array(values, type=field.type)
                  for values, field in zip(columns, self.schema, strict=True)]
        self._add(pa.RecordBatch.from_arrays(arrays, schema=self.schema))

    def commit(self) -> dict[str, Any]:
        self._file.flush()
        return {"offset": self._file.tell()}

    def user_done(self, report: UserReport) -> None:
        pass

    def resume(self, checkpoint: Checkpoint) -> None:
        pass  # the stream keeps the rows of what the checkpoint lists

    def record_users(self, results: Any) -> None:
        pass  # no place for them in the file: the report has them

    def finish(self) -> None:
        if self._pending or (self._out is None and not self._parts):
            self._flush()  # the last rows, or an empty file with the schema
        if self._out is not None:
            self._out.close()
            self._out = None
        self.close()
        os.replace(self._target, self.path)  # a directory: onto a missing or empty one
        os.remove(self.part)

    def close(self) -> None:
        if self._out is not None:  # an unfinished run: its Parquet file is no use
            with contextlib.suppress(Exception):
                self._out.close()
            self._out = None
        if not self._file.closed:
            with contextlib.suppress(Exception):
                self._stream.close()
            self._file.close()


def open_parquet(path: str, resume_offset: int | None,
                 finished: Collection[tuple[str, str]] | None) -> ParquetWriter:
    return ParquetWriter(path, resume_offset=resume_offset, finished=finished)
