"""stampede: 1,000 concurrent requests at the moment the user's token expires; how many
token requests reach the emulator (``state.counters.grants``). Target: exactly 1.

The emulator runs in this process: the figure is a count, not a time, so its CPU does
not matter, and reading ``sandbox.state.counters`` directly is the ground truth.

Scenarios, each on a fresh emulator and client, after one first ``users.me()`` that
obtains the token (its grant is not counted):
* revoked: ``sandbox.expire_tokens()`` kills the token on the server; the client still
  believes it fresh, so all 1,000 go out, get 401, and must share one renewal;
* expired: ``token_lifetime=1``; wait until the token is stale on the client's clock
  too, then fire the 1,000: they must share one renewal before sending;
* expired, 1,000 scopes: as "expired", but each request goes through its own
  ``client.as_user(email, password)`` scope (the client's token cache must share one
  token, and one renewal, between scopes of the same user).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from . import Options, print_table, print_targets, section, target

NAME = "stampede"
CONCURRENT = 1000


async def scenario(kind: str) -> dict[str, Any]:
    import oxlin_async as ox
    from oxlin_async.testing import OxlinSandbox

    lifetime = 1 if kind.startswith("expired") else 3600
    async with OxlinSandbox(users=1, seed=5, accounts_per_user=1,
                            transactions_per_account=1, token_lifetime=lifetime) as sandbox:
        creds = sandbox.users[0]
        async with ox.OxlinClient(sandbox.client_id, sandbox.client_secret,
                                  environment=sandbox.environment) as client:
            user = client.as_user(creds.email, creds.password)
            await user.users.me()
            counters = sandbox.state.counters
            before_grants = sum(counters.grants.values())
            before_requests = sum(counters.requests.values())
            if kind == "revoked":
                sandbox.expire_tokens()
            else:
                await asyncio.sleep(lifetime + 0.05)  # stale on both clocks
            if kind == "expired, 1,000 scopes":
                scopes: Callable[[int], Any] = lambda _: client.as_user(  # noqa: E731
                    creds.email, creds.password)
            else:
                scopes = lambda _: user  # noqa: E731
            t0 = time.perf_counter()
            results = await asyncio.gather(*(scopes(i).users.me() for i in range(CONCURRENT)),
                                           return_exceptions=True)
            wall = time.perf_counter() - t0
            errors = [r for r in results if isinstance(r, BaseException)]
            grants = {k: v for k, v in counters.grants.items()}
            return {
                "scenario": kind,
                "token_requests": sum(counters.grants.values()) - before_grants,
                "grants_after": grants,
                "requests": sum(counters.requests.values()) - before_requests,
                "errors": len(errors),
                "first_error": repr(errors[0]) if errors else None,
                "wall_s": wall,
            }


async def run_async(opts: Options) -> dict[str, Any]:
    kinds = ("revoked", "expired", "expired, 1,000 scopes")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for _ in range(opts.repeats):
        for kind in kinds:
            runs[kind].append(await scenario(kind))
    return {"runs": runs}


def run(opts: Options) -> dict[str, Any]:
    section(f"stampede: {CONCURRENT:,} concurrent requests when the token expires")
    res = asyncio.run(run_async(opts))
    runs = res["runs"]
    rows = []
    targets = []
    for kind, rs in runs.items():
        grants = [r["token_requests"] for r in rs]
        errors = sum(r["errors"] for r in rs)
        rows.append([kind, ", ".join(map(str, grants)), errors,
                     max(r["requests"] for r in rs), max(r["wall_s"] for r in rs)])
        worst = max(grants, key=lambda g: abs(g - 1))
        targets.append(target(f"token requests, {kind} (worst of {len(rs)} runs)", worst,
                              "==", 1, note=f"{errors} failed requests" if errors else ""))
    print(f"  users.me() x {CONCURRENT:,} at once; {opts.repeats} runs per scenario, each on "
          "a fresh emulator (in this process) and client")
    print_table(["scenario", "token requests per run", "failed", "API+token requests (max)",
                 "wall s (max)"], rows)
    print()
    print_targets(targets)
    for kind, rs in runs.items():
        for r in rs:
            if r["first_error"]:
                print(f"  first error ({kind}): {r['first_error']}")
                break
    return {"concurrent": CONCURRENT, **res, "targets": targets}
