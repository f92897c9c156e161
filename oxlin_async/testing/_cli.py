"""``python -m oxlin_async.testing`` (and ``oxlin-async sandbox``): serve the emulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from ._faults import Faults
from ._sandbox import OxlinSandbox

DESCRIPTION = "Serve a local Oxlin emulator until interrupted."


def add_sandbox_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                          prefix: str = "", *, users: int = 5) -> None:
    """The options that shape a sandbox; `prefix` is "sandbox-" where they share a CLI,
    `users` the default number of seeded users there.

    `parser` may be an argument group (``oxlin-async export`` groups them)."""
    p = f"--{prefix}"
    parser.add_argument(f"{p}users", type=int, default=users, metavar="N",
                        help=f"seeded users (default {users})")
    parser.add_argument(f"{p}seed", type=int, default=1, metavar="S",
                        help="seed of the population and the faults (default 1)")
    parser.add_argument(f"{p}accounts", type=int, default=3, metavar="N",
                        help="accounts per seeded user (default 3)")
    parser.add_argument(f"{p}transactions", type=int, default=100, metavar="N",
                        help="transactions per account (default 100)")
    parser.add_argument(f"{p}testbank", action="append", default=[], metavar="FILE",
                        help="a Linxo test-bank file (path or bundled name such as "
                             "fr/harry_potter); each adds a user with that connection")
    parser.add_argument(f"{p}latency-ms", type=float, default=0.0, metavar="MS",
                        help="latency added to every API response")
    parser.add_argument(f"{p}jitter-ms", type=float, default=0.0, metavar="MS",
                        help="random extra latency, uniform from 0 to MS")
    parser.add_argument(f"{p}fault-rate", type=float, default=0.0, metavar="P",
                        help="probability that a request fails (429, 5xx, dropped or "
                             "truncated), spread evenly over the kinds")
    parser.add_argument(f"{p}retry-after", type=int, default=1, metavar="S",
                        help="Retry-After of the injected 429 and 503 answers (default 1)")
    parser.add_argument(f"{p}token-lifetime", type=int, default=3600, metavar="S",
                        help="access-token lifetime in seconds (default 3600)")
    parser.add_argument(f"{p}peer-shapes", action="store_true",
                        help="answer with the shapes public connectors observe where they"
                             " differ from the reference (docs/oxlin-api §15)")


def sandbox_from_args(args: argparse.Namespace, prefix: str = "", *, host: str = "127.0.0.1",
                      port: int = 0) -> OxlinSandbox:
    def get(name: str) -> Any:
        return getattr(args, (prefix + name).replace("-", "_"))

    rate, seed = float(get("fault-rate")), int(get("seed"))
    for name in ("users", "accounts", "transactions", "retry-after", "token-lifetime"):
        if int(get(name)) < (1 if name == "token-lifetime" else 0):
            raise ValueError(f"--{prefix}{name} must be at least 1" if name == "token-lifetime"
                             else f"--{prefix}{name} must not be negative")
    if not 0 <= rate <= 1:
        raise ValueError(f"--{prefix}fault-rate must be between 0 and 1, got {rate}")
    faults = Faults.uniform(rate, seed=seed) if rate else Faults(seed=seed)
    faults.latency = float(get("latency-ms")) / 1000
    faults.jitter = float(get("jitter-ms")) / 1000
    faults.retry_after = int(get("retry-after"))
    faults.peer_shapes = bool(get("peer-shapes"))
    return OxlinSandbox(
        users=int(get("users")), seed=seed,
        accounts_per_user=int(get("accounts")),
        transactions_per_account=int(get("transactions")),
        testbanks=list(get("testbank")),
        token_lifetime=int(get("token-lifetime")),
        faults=faults, host=host, port=port)


def describe(sandbox: OxlinSandbox) -> str:
    """What to paste into a shell: ``export`` lines, then the export command for these
    hosts; everything else is a ``#`` comment, so the whole text pastes cleanly."""
    q = shlex.quote
    lines = [
        f"# Oxlin emulator serving on {sandbox.base_url} (Ctrl-C to stop)",
        f"#   auth  {sandbox.auth_url}   (POST /token)",
        f"#   api   {sandbox.api_url}",
        f"#   embed {sandbox.embed_url}",
        f"export OXLIN_CLIENT_ID={q(sandbox.client_id)}",
        f"export OXLIN_CLIENT_SECRET={q(sandbox.client_secret)}",
        f"export OXLIN_AUTH_URL={q(str(sandbox.auth_url))}",
        f"export OXLIN_API_URL={q(str(sandbox.api_url))}",
        f"export OXLIN_EMBED_URL={q(str(sandbox.embed_url))}",
        "# then, with a users file of the lines below (without '# '):",
        "#   oxlin-async export --users users.csv --out tx.jsonl",
        f"# users ({len(sandbox.users)}), email,password:",
    ]
    lines += [f"# {u.email},{u.password}" for u in sandbox.users]
    lines.append("# Ctrl-C to stop")
    return "\n".join(lines)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a served emulator: here, and in ``oxlin-async sandbox``."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    add_sandbox_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m oxlin_async.testing",
                                     description=DESCRIPTION)
    add_serve_arguments(parser)
    return parser


async def serve(sandbox: OxlinSandbox) -> None:
    async with sandbox:
        print(describe(sandbox), flush=True)
        await asyncio.Event().wait()


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted, with options from `add_serve_arguments`."""
    try:
        sandbox = sandbox_from_args(args, host=args.host, port=args.port)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(serve(sandbox))
        except OSError as exc:
            print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
