"""Peer-observed shapes (docs/oxlin-api §15): what public connectors written against the
real API send or expect where it differs from the reference, for `Faults.peer_shapes`.

The emulator follows the reference; with this on, its answers take these shapes instead,
so a client's tolerance of them can be tested over real HTTP.
"""

from __future__ import annotations

import json
from typing import Any

from ._http import dumps

__all__ = ["peer_body", "peer_shapes"]


def _account(item: dict[str, Any]) -> None:
    # A string enum where the reference has an object (spelled as one connector does).
    item["classification"] = ("PROFESSIONAL" if item.get("usage") == "PROFESSIONAL"
                              else "PERSONNAL")
    item["owner"] = {}
    for detail in ("loan", "savings", "credit_card"):
        item[detail] = {}


def _connection(item: dict[str, Any]) -> None:
    item["owner"] = {}


def _transaction(item: dict[str, Any]) -> None:
    item["original_trx_id"] = item.get("id")
    item["check_number"] = None
    item["transaction_date"] = item.get("date")
    item["source"] = {}


_SHAPERS = {"accounts": _account, "connections": _connection, "transactions": _transaction}


def peer_shapes(path: str, data: Any) -> Any:
    """``data`` (the JSON answer to ``path``) with the peer-observed shapes, in place."""
    segments = [s for s in path.split("/") if s]
    shaper = next((_SHAPERS[s] for s in segments if s in _SHAPERS), None)
    if shaper is None:
        return data
    for item in data if isinstance(data, list) else [data]:
        if isinstance(item, dict):
            shaper(item)
    return data


def peer_body(path: str, body: bytes) -> bytes:
    """A JSON answer's body, reshaped; anything else as it is."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    return dumps(peer_shapes(path, data))
