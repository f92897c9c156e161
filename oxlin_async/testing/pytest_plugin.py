"""pytest fixtures for your own tests: a running emulator and a client bound to it.

pytest loads this module by itself once ``oxlin-async[testing]`` is installed (entry point
``pytest11``, name ``oxlin``)::

    async def test_balances(oxlin_sandbox, oxlin_client):
        user = oxlin_sandbox.users[0]
        accounts = await oxlin_client.as_user(user.email, user.password).accounts.list().collect()
        assert accounts

- ``oxlin_sandbox``: a started `OxlinSandbox`, new for each test, with
  `DEFAULT_SANDBOX_OPTIONS` (three seeded users, seed 0).
- ``oxlin_client``: an `OxlinClient` pointed at it, closed after the test.
- ``oxlin_sandbox_options`` / ``oxlin_client_options``: keyword arguments of `OxlinSandbox`
  and `OxlinClient`; override these fixtures (in a ``conftest.py``, a module or a class) to
  change them for many tests.
- ``@pytest.mark.oxlin_sandbox(users=1, seed=7, testbanks=["fr/harry_potter"], ...)``: the
  same for one test (or every test of a marked class or module); it wins over the fixture.

The async fixtures run on pytest-asyncio (the ``testing`` extra installs it) and are
declared with ``pytest_asyncio.fixture``, so they work in its ``strict`` mode (mark the tests
``@pytest.mark.asyncio``) as well as in ``auto`` mode. They use the event loop that
pytest-asyncio gives function-scoped fixtures (``asyncio_default_fixture_loop_scope``),
which must be the one the test runs in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest

import oxlin_async as ox

from ._sandbox import OxlinSandbox

# pytest imports this module for every run in an environment where oxlin-async is installed,
# and a plugin that fails to import aborts the whole run (PluginImportFailure), so
# pytest-asyncio is optional here: without it, only the tests that ask for the async fixtures
# fail, with a message that says what to install.
try:
    import pytest_asyncio
except ImportError:
    _HAVE_PYTEST_ASYNCIO = False
else:
    _HAVE_PYTEST_ASYNCIO = True

__all__ = ["DEFAULT_SANDBOX_OPTIONS"]

#: What ``oxlin_sandbox`` starts with when neither the options fixture nor the marker says.
DEFAULT_SANDBOX_OPTIONS: Mapping[str, Any] = MappingProxyType({"users": 3, "seed": 0})

_MARKER = "oxlin_sandbox"
_MISSING = ("the {name} fixture needs pytest-asyncio, which is not installed: "
            "pip install 'oxlin-async[testing]'")


def pytest_configure(config: pytest.Config) -> None:
    # Registered so that `--strict-markers` accepts it.
    config.addinivalue_line(
        "markers", f"{_MARKER}(**options): keyword arguments of the OxlinSandbox behind the "
                   "oxlin_sandbox fixture (users, seed, testbanks, faults, ...)")


@pytest.fixture
def oxlin_sandbox_options() -> dict[str, Any]:
    """Keyword arguments of `OxlinSandbox` (over `DEFAULT_SANDBOX_OPTIONS`); override me."""
    return {}


@pytest.fixture
def oxlin_client_options() -> dict[str, Any]:
    """Keyword arguments of `OxlinClient` besides the credentials and hosts; override me."""
    return {}


def _sandbox_options(request: pytest.FixtureRequest,
                     options: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then the options fixture, then the closest ``oxlin_sandbox`` marker."""
    merged = {**DEFAULT_SANDBOX_OPTIONS, **options}
    marker = request.node.get_closest_marker(_MARKER)
    if marker is not None:
        if marker.args:
            pytest.fail(f"@pytest.mark.{_MARKER} takes keyword arguments only "
                        f"(got {marker.args!r})", pytrace=False)
        merged.update(marker.kwargs)
    return merged


async def _oxlin_sandbox(request: pytest.FixtureRequest,
                         oxlin_sandbox_options: dict[str, Any]) -> AsyncIterator[OxlinSandbox]:
    """A started `OxlinSandbox` (seeded users: ``.users``), closed after the test."""
    options = _sandbox_options(request, oxlin_sandbox_options)
    try:
        sandbox = OxlinSandbox(**options)
    except TypeError as exc:  # an unknown option: say where it came from
        pytest.fail(f"bad oxlin_sandbox options {sorted(options)}: {exc}", pytrace=False)
    async with sandbox:
        yield sandbox


async def _oxlin_client(oxlin_sandbox: OxlinSandbox,
                        oxlin_client_options: dict[str, Any]) -> AsyncIterator[ox.OxlinClient]:
    """An `OxlinClient` with the sandbox's credentials and hosts, closed after the test."""
    async with ox.OxlinClient(oxlin_sandbox.client_id, oxlin_sandbox.client_secret,
                              environment=oxlin_sandbox.environment,
                              **oxlin_client_options) as client:
        yield client


if _HAVE_PYTEST_ASYNCIO:
    oxlin_sandbox = pytest_asyncio.fixture(_oxlin_sandbox, name="oxlin_sandbox")
    oxlin_client = pytest_asyncio.fixture(_oxlin_client, name="oxlin_client")
else:
    @pytest.fixture(name="oxlin_sandbox")
    def _oxlin_sandbox_unavailable() -> None:
        pytest.fail(_MISSING.format(name="oxlin_sandbox"), pytrace=False)

    @pytest.fixture(name="oxlin_client")
    def _oxlin_client_unavailable() -> None:
        pytest.fail(_MISSING.format(name="oxlin_client"), pytrace=False)
