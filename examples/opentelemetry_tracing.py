"""One OpenTelemetry span per HTTP request the SDK makes, from an aiohttp `TraceConfig`.

Run: ``python examples/opentelemetry_tracing.py`` (needs ``pip install opentelemetry-sdk``).
It starts the emulator in-process with some injected 500s, reads one user's transactions
inside an application span, and prints every span as it ends: each attempt of a retried
request is a span of its own, a child of the application span.

The mechanism is aiohttp's: give `OxlinClient` a session created with
``trace_configs=[http_tracing(tracer)]``; the SDK sends every request through it. Only the
method, host, port, path and status are recorded: never the headers (they carry the
tokens and the client credentials) nor the bodies (passwords, refresh tokens). A span ends
when the answer's headers arrive. No ``traceparent`` header is sent: Oxlin is a third party.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiohttp
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import oxlin_async as ox
from oxlin_async.testing import Faults, OxlinSandbox


def http_tracing(tracer: trace.Tracer) -> aiohttp.TraceConfig:
    """A `TraceConfig` that opens a client span per request (OpenTelemetry HTTP names)."""

    async def on_request_start(session: aiohttp.ClientSession, context: SimpleNamespace,
                               params: aiohttp.TraceRequestStartParams) -> None:
        # The span's parent is whatever span is current in the task sending the request.
        context.span = tracer.start_span(params.method, kind=trace.SpanKind.CLIENT, attributes={
            "http.request.method": params.method,
            "server.address": params.url.host or "",
            "server.port": params.url.port or 0,
            "url.path": params.url.path,
        })

    async def on_request_end(session: aiohttp.ClientSession, context: SimpleNamespace,
                             params: aiohttp.TraceRequestEndParams) -> None:
        status = params.response.status
        context.span.set_attribute("http.response.status_code", status)
        if status >= 400:
            context.span.set_attribute("error.type", str(status))
            context.span.set_status(trace.StatusCode.ERROR)
        context.span.end()

    async def on_request_exception(session: aiohttp.ClientSession, context: SimpleNamespace,
                                   params: aiohttp.TraceRequestExceptionParams) -> None:
        if isinstance(params.exception, asyncio.CancelledError):
            # Not a failure: the SDK dropped a request it no longer needs (a page fetched
            # ahead past the end of a list, a sibling of a failed bulk task).
            context.span.set_attribute("oxlin.cancelled", True)
            context.span.end()
            return
        context.span.set_attribute("error.type", type(params.exception).__qualname__)
        context.span.set_status(trace.StatusCode.ERROR, type(params.exception).__qualname__)
        context.span.end()

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_request_start)
    config.on_request_end.append(on_request_end)
    config.on_request_exception.append(on_request_exception)
    return config


async def read_transactions(sandbox: OxlinSandbox, tracer: trace.Tracer, *,
                            retry: ox.RetryPolicy | None = None) -> int:
    """The application: one user's transactions, inside a span of its own."""
    async with aiohttp.ClientSession(trace_configs=[http_tracing(tracer)]) as http, \
            ox.OxlinClient(sandbox.client_id, sandbox.client_secret,
                           environment=sandbox.environment, session=http, retry=retry) as client:
        user = sandbox.users[0]
        with tracer.start_as_current_span("read transactions"):
            jane = client.as_user(user.email, user.password)
            return len(await jane.transactions.list(page_size=50).collect())


def one_line(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    if "url.path" not in attributes:
        return f"{span.name}\n"
    outcome = attributes.get("http.response.status_code", attributes.get("error.type"))
    if attributes.get("oxlin.cancelled"):
        outcome = "cancelled (a page read ahead, past the end)"
    return f"  {span.name} {attributes['url.path']} -> {outcome}\n"


async def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(formatter=one_line)))
    faults = Faults(seed=1, rate_500=0.2)
    async with OxlinSandbox(users=1, seed=7, accounts_per_user=2, faults=faults) as sandbox:
        count = await read_transactions(sandbox, provider.get_tracer("oxlin-example"),
                                        retry=ox.RetryPolicy(max_retries=6, initial_backoff=0.05))
    provider.shutdown()
    print(f"{count} transactions")


if __name__ == "__main__":
    asyncio.run(main())
