"""Observing an application's requests: aiohttp trace configs on a borrowed session."""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import aiohttp
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import oxlin_async as ox
from oxlin_async.testing import Faults, OxlinSandbox

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "opentelemetry_tracing.py"
FAST = ox.RetryPolicy(initial_backoff=0.01, max_backoff=0.05)


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("opentelemetry_tracing", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def secrets_of(sandbox: OxlinSandbox) -> list[str]:
    """Everything that must never be recorded: credentials and every token issued."""
    basic = base64.b64encode(f"{sandbox.client_id}:{sandbox.client_secret}".encode()).decode()
    return [sandbox.client_secret, basic, *(u.password for u in sandbox.users),
            *sandbox.state.tokens, *sandbox.state.refresh_tokens]


async def test_a_trace_config_records_method_path_and_status_of_every_request(
        sandbox: OxlinSandbox) -> None:
    recorded: list[tuple[str, str, int]] = []
    headers_sent: list[str] = []  # what a careless recorder would keep

    async def on_request_end(session: aiohttp.ClientSession, context: SimpleNamespace,
                             params: aiohttp.TraceRequestEndParams) -> None:
        recorded.append((params.method, params.url.path, params.response.status))
        headers_sent.append(repr(params.headers))

    tracing = aiohttp.TraceConfig()
    tracing.on_request_end.append(on_request_end)
    sandbox.set_faults(seed=5, rate_500=0.2)
    user = sandbox.users[0]
    async with aiohttp.ClientSession(trace_configs=[tracing]) as http:
        async with ox.OxlinClient(sandbox.client_id, sandbox.client_secret,
                                  environment=sandbox.environment, session=http,
                                  retry=FAST) as client:
            jane = client.as_user(user.email, user.password)
            me = await jane.users.me()
            accounts = await jane.accounts.list(prefetch=1).collect()
            transactions = await jane.transactions.list(page_size=100, prefetch=1).collect()
        assert not http.closed  # borrowed, so the caller's to close

    assert me.email == user.email and accounts and transactions
    # Every request the emulator answered, each retry included, was seen, with its status.
    served = sandbox.state.counters
    assert len(recorded) == sum(served.requests.values())
    assert sum(status == 500 for _, _, status in recorded) == served.faults["500"] > 0
    assert {(method, path) for method, path, _ in recorded} == {
        ("POST", "/auth/token"), ("GET", "/api/v2.1/users/me"),
        ("GET", "/api/v2.1/accounts"), ("GET", "/api/v2.1/transactions")}
    assert recorded[0][:2] == ("POST", "/auth/token")  # the password grant comes first
    assert all(status in (200, 500) for _, _, status in recorded)

    secrets = secrets_of(sandbox)
    # The headers did carry secrets (so this check has teeth); method, path and status do not.
    assert any(f"Bearer {token}" in "".join(headers_sent) for token in sandbox.state.tokens)
    assert any(secret in "".join(headers_sent) for secret in secrets)
    assert not [secret for secret in secrets if secret in repr(recorded)]


async def test_the_opentelemetry_example_makes_one_child_span_per_request() -> None:
    example = load_example()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with OxlinSandbox(users=1, seed=7, accounts_per_user=2,
                            faults=Faults(seed=1, rate_500=0.2)) as sandbox:
        # Concurrent pages share the seeded draws in arrival order: retry enough for any.
        count = await example.read_transactions(
            sandbox, provider.get_tracer("test"),
            retry=ox.RetryPolicy(max_retries=8, initial_backoff=0.01, max_backoff=0.05))
    provider.shutdown()

    assert count == sum(len(txs) for txs in
                        sandbox.state.data(int(sandbox.users[0].id)).transactions.values())
    spans = exporter.get_finished_spans()
    (app,) = [s for s in spans if s.name == "read transactions"]
    http = [s for s in spans if s is not app]
    assert http and all(s.kind is trace.SpanKind.CLIENT for s in http)
    assert all(s.parent is not None and s.parent.span_id == app.context.span_id
               and s.context.trace_id == app.context.trace_id for s in http)
    answered = [s for s in http if s.attributes and "http.response.status_code" in s.attributes]
    cancelled = [s for s in http if s.attributes and s.attributes.get("oxlin.cancelled")]
    assert len(answered) + len(cancelled) == len(http)
    # Every request the emulator saw has its span; a cancelled one may not have arrived.
    served = sandbox.state.counters
    assert len(answered) <= sum(served.requests.values()) <= len(http)
    for span in answered:
        attributes = dict(span.attributes or {})
        status = attributes.pop("http.response.status_code")
        assert span.name == attributes["http.request.method"]
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == sandbox.port
        assert (span.name, attributes["url.path"]) in {
            ("POST", "/auth/token"), ("GET", "/api/v2.1/transactions")}
        if status == 500:
            assert attributes.pop("error.type") == "500"
            assert span.status.status_code is trace.StatusCode.ERROR
        else:
            assert status == 200 and span.status.status_code is trace.StatusCode.UNSET
        assert set(attributes) == {"http.request.method", "server.address", "server.port",
                                   "url.path"}
    failed = [s for s in answered if s.attributes and
              s.attributes["http.response.status_code"] == 500]
    assert failed and len(failed) <= served.faults["500"]
    everything = repr([(s.name, dict(s.attributes or {})) for s in spans])
    assert not [secret for secret in secrets_of(sandbox) if secret in everything]


def test_the_opentelemetry_example_runs_and_prints_its_spans() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # Seeded faults: the first request (the password grant) fails once and is retried.
    assert lines[:2] == ["  POST /auth/token -> 500", "  POST /auth/token -> 200"]
    assert "  GET /api/v2.1/transactions -> 200" in lines
    assert lines[-2:] == ["read transactions", "200 transactions"]
