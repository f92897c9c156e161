"""The Parquet writer (the ``parquet`` extra: pyarrow), with the Arrow schema of the row
contract (`oxlin_async._rows.arrow_schema`).

While the export runs, pages go to ``<out>.part`` as an Arrow IPC stream, one record
batch per page: unlike a Parquet file, whose footer is written last, a stream killed at
any point is readable up to the offset the checkpoint recorded, so a resumed run keeps
the rows of finished accounts (and drops the others, as the JSON Lines writer does).
When the run ends, the stream is read back batch by batch into Parquet row groups of
`ROW_GROUP` rows (memory bounded by one row group), written to a temporary name and
renamed: one file, or with an ``--out`` ending in ``/``, a directory of parts of at most
`PART_ROWS` rows each.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Collection, Iterator
from typing import IO, TYPE_CHECKING, Any

from ._rows import ACCOUNT_KEY, Kind, Page, arrow_schema, encoder

if TYPE_CHECKING:
    import pyarrow as pa

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
        self._done = False
        kept: list[Any] = []
        if resume_offset is not None and os.path.exists(self.part):
            kept = list(self._finished_batches(resume_offset, finished or ()))
        self._file: IO[bytes] = open(self.part + ".tmp", "wb")  # noqa: SIM115
        self._stream = pa.ipc.new_stream(self._file, self.schema)
        for batch in kept:
            self._stream.write_batch(batch)
        self._file.flush()
        os.replace(self.part + ".tmp", self.part)  # the open file keeps its place

    def _finished_batches(self, offset: int, finished: Collection[tuple[str, str]]
                          ) -> Iterator[pa.RecordBatch]:
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

    def write(self, page: Page) -> None:
        rows = _arrow_rows(page)
        if not rows:
            return
        pa = self._pa
        columns = zip(*rows, strict=True)
        arrays = [pa.array(values, type=field.type)
                  for values, field in zip(columns, self.schema, strict=True)]
        self._stream.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))

    def commit(self) -> dict[str, Any]:
        self._file.flush()
        return {"offset": self._file.tell()}

    def user_done(self, report: UserReport) -> None:
        pass

    def resume(self, checkpoint: Checkpoint) -> None:
        pass  # the stream keeps the rows of what the checkpoint lists

    def record_users(self, results: Any) -> None:
        pass  # no place for them in the file: the report has them

    def _batches(self) -> Iterator[pa.RecordBatch]:
        with self._pa.ipc.open_stream(self._pa.OSFile(self.part)) as reader:
            yield from reader

    def finish(self) -> None:
        pa, pq = self._pa, self._pa.parquet
        self._stream.close()
        self._file.close()
        target = self.path + ".tmp"
        if self.directory:
            shutil.rmtree(target, ignore_errors=True)
            os.mkdir(target)
        number, rows_in_part, out = 0, 0, None
        pending: list[Any] = []
        pending_rows = 0

        def flush() -> None:
            nonlocal out, number, rows_in_part, pending, pending_rows
            if out is None:
                name = (os.path.join(target, f"part-{number:05d}.parquet") if self.directory
                        else target)
                out = pq.ParquetWriter(name, self.schema)
            out.write_table(pa.Table.from_batches(pending, schema=self.schema),
                            row_group_size=ROW_GROUP)
            rows_in_part += pending_rows
            pending, pending_rows = [], 0
            if self.directory and rows_in_part >= PART_ROWS:
                out.close()
                out, number, rows_in_part = None, number + 1, 0

        def room() -> int:
            left = ROW_GROUP - pending_rows
            return min(left, PART_ROWS - rows_in_part - pending_rows) if self.directory else left

        try:
            for batch in self._batches():
                while batch.num_rows:
                    head = batch.slice(0, room())
                    pending.append(head)
                    pending_rows += head.num_rows
                    batch = batch.slice(head.num_rows)
                    if room() == 0:
                        flush()
            if pending or (out is None and not (self.directory and number)):
                flush()  # the last rows, or an empty file with the schema
        finally:
            if out is not None:
                out.close()
        os.replace(target, self.path)  # a directory: onto a missing or empty one
        os.remove(self.part)
        self._done = True

    def close(self) -> None:
        if not self._file.closed:
            with contextlib.suppress(Exception):
                self._stream.close()
            self._file.close()


def open_parquet(path: str, resume_offset: int | None,
                 finished: Collection[tuple[str, str]] | None) -> ParquetWriter:
    return ParquetWriter(path, resume_offset=resume_offset, finished=finished)
