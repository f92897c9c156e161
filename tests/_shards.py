"""Helpers of the sharded-export tests: one emulator shared by every process of a test
(served from a thread, its hosts and client credentials in this process's environment,
as a worker would have them), the rows of a folder of parts, and who signed in."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _helpers import row_values, served

from oxlin_async.testing import OxlinSandbox

Call = Callable[[Callable[[], Any]], Any]


@contextlib.contextmanager
def shared(box: OxlinSandbox, folder: Path, monkeypatch: pytest.MonkeyPatch,
           passwords: dict[str, str] | None = None) -> Iterator[Call]:
    """`box` serving for every process of the test: ``OXLIN_CLIENT_ID/SECRET`` and the
    three ``OXLIN_*_URL`` set here (child processes inherit them), and ``users.csv`` in
    `folder` (`passwords` overrides some users' passwords, by e-mail)."""
    wrong = passwords or {}
    (folder / "users.csv").write_text("".join(
        f"{u.email},{wrong.get(u.email, u.password)}\n" for u in box.users), encoding="utf-8")
    with served(box) as call:
        for name, value in (("OXLIN_CLIENT_ID", box.client_id),
                            ("OXLIN_CLIENT_SECRET", box.client_secret),
                            ("OXLIN_AUTH_URL", str(box.auth_url)),
                            ("OXLIN_API_URL", str(box.api_url)),
                            ("OXLIN_EMBED_URL", str(box.embed_url))):
            monkeypatch.setenv(name, value)
        yield call


def signed_in(call: Call, box: OxlinSandbox) -> Counter[str]:
    """User tokens the emulator granted so far, by e-mail: each fetch of a user signs it
    in once (its requests in this test: one token, its accounts, its pages)."""
    emails = {int(u.id): u.email for u in box.users}
    ids = call(lambda: [t.user_id for t in box.state.tokens.values()])
    return Counter(emails[i] for i in ids if i in emails)


def rows_of(path: Path) -> list[dict[str, Any]]:
    """The rows of one part, whatever its format, as text values (amounts exact)."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            return [json.loads(line, parse_float=Decimal) for line in f]
    if path.suffix == ".csv":
        import csv

        with path.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()  # type: ignore[no-any-return]
    raise AssertionError(f"not a part: {path}")


def manifest_rows(folder: Path) -> list[dict[str, Any]]:
    """Every row of a committed export, read as a reader should: the parts its manifest
    lists (after checking `_SUCCESS`), each part's row count checked."""
    assert (folder / "_SUCCESS").exists()
    manifest = json.loads((folder / "_manifest.json").read_text(encoding="utf-8"))
    out: list[dict[str, Any]] = []
    for part in manifest["parts"]:
        rows = rows_of(folder / part["path"])
        assert len(rows) == part["rows"], part
        out += rows
    assert len(out) == manifest["rows"]
    return out


def by_key(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows by (user, id), as Python values of their columns' kinds (`row_values`),
    so that parts of any format compare; a row twice fails."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (str(row["user"]), str(row["id"]))
        assert key not in out, f"exported twice: {key}"
        out[key] = row_values(row)
    return out


def cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """``python -m oxlin_async ARGS`` as a process of its own, with this environment."""
    return subprocess.Popen([sys.executable, "-m", "oxlin_async", *args], cwd=cwd,
                            env=dict(os.environ), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = process.communicate(timeout=120)
    return process.returncode, err
