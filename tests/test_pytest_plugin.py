"""The pytest plugin for users' own tests: run users' test files in a fresh pytest.

Each run is a subprocess (``runpytest_subprocess``), so the plugin is found the way a user's
pytest finds it: through the installed distribution's ``pytest11`` entry point.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import aiohttp
import pytest
from packaging.requirements import Requirement

import oxlin_async as ox
from oxlin_async.testing import OxlinSandbox, pytest_plugin

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    """The example test of the README's "Testing your code"."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Testing your code", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


# The README's example, and a test of the same code that expects the wrong number.
WRONG_EXPECTATION = """

@pytest.mark.oxlin_sandbox(users=1, accounts_per_user=1, transactions_per_account=5)
async def test_a_wrong_expectation_fails(oxlin_sandbox, oxlin_client):
    user = oxlin_sandbox.users[0]
    assert await count_transactions(oxlin_client.as_user(user.email, user.password)) == 6
"""


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # The plugin must be found by entry point, as in a user's environment.
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=90)


def test_the_distribution_declares_the_plugin_and_the_testing_extra() -> None:
    dist = importlib.metadata.distribution("oxlin-async")
    plugins = [ep for ep in dist.entry_points if ep.group == "pytest11"]
    assert [(ep.name, ep.value) for ep in plugins] == [
        ("oxlin", "oxlin_async.testing.pytest_plugin")]
    assert plugins[0].load() is pytest_plugin
    assert "testing" in (dist.metadata.get_all("Provides-Extra") or [])
    requires = [Requirement(line) for line in dist.requires or ()]

    def needed(extra: str) -> set[str]:
        return {r.name for r in requires
                if r.marker is None or r.marker.evaluate({"extra": extra})}

    assert needed("testing") - needed("") == {"pytest", "pytest-asyncio"}
    # The core install does not need pytest.
    assert not {name for name in needed("") if name.startswith("pytest")}


def test_the_readme_example_passes_and_a_wrong_expectation_fails_in_auto_mode(
        pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_user=readme_example() + WRONG_EXPECTATION)
    result = run(pytester, "--strict-markers")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_a_wrong_expectation_fails*", "*assert 5 == 6*"])


def test_strict_mode_with_marked_tests_and_a_fresh_sandbox_per_test(
        pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = strict\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_strict="""
        import aiohttp
        import pytest

        seen = []

        @pytest.mark.asyncio
        async def test_first(oxlin_sandbox, oxlin_client):
            assert len(oxlin_sandbox.users) == 3      # the default options
            me = await oxlin_client.as_user(oxlin_sandbox.users[1].email,
                                            oxlin_sandbox.users[1].password).users.me()
            assert me.email == oxlin_sandbox.users[1].email
            oxlin_sandbox.state.create_user("left.behind@example.com", "pw")
            seen.append(oxlin_sandbox)

        @pytest.mark.asyncio
        async def test_second_gets_a_new_sandbox_and_the_first_is_closed(oxlin_sandbox):
            assert oxlin_sandbox is not seen[0]
            assert oxlin_sandbox.state.user_by_email("left.behind@example.com") is None
            async with aiohttp.ClientSession() as http:
                with pytest.raises(aiohttp.ClientConnectionError):
                    await http.get(seen[0].api_url + "/users/me")
    """)
    result = run(pytester, "--strict-markers")
    result.assert_outcomes(passed=2)


def test_options_come_from_a_fixture_users_override_and_the_marker_wins(
        pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest("""
        import pytest
        import oxlin_async as ox

        @pytest.fixture
        def oxlin_sandbox_options():
            return {"users": 5, "seed": 11, "client_id": "my-app"}

        @pytest.fixture
        def oxlin_client_options():
            return {"retry": ox.RetryPolicy.disabled()}
    """)
    pytester.makepyfile(test_options="""
        import pytest

        async def test_from_the_fixture(oxlin_sandbox, oxlin_client):
            assert len(oxlin_sandbox.users) == 5
            assert oxlin_sandbox.client_id == "my-app"
            assert (await oxlin_client.users.create("x@example.com", "pw")).isdigit()

        @pytest.mark.oxlin_sandbox(users=1, testbanks=["fr/harry_potter"])
        async def test_the_marker_wins(oxlin_sandbox):
            assert len(oxlin_sandbox.users) == 2        # one seeded, one test-bank user
            assert oxlin_sandbox.client_id == "my-app"  # the rest still from the fixture

        @pytest.mark.oxlin_sandbox(userz=1)
        async def test_a_misspelt_option_is_reported(oxlin_sandbox):
            pass

        @pytest.mark.oxlin_sandbox(1)
        async def test_a_positional_argument_is_reported(oxlin_sandbox):
            pass
    """)
    result = run(pytester, "--strict-markers")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(["*bad oxlin_sandbox options*userz*"])
    result.stdout.fnmatch_lines(["*oxlin_sandbox takes keyword arguments only*"])


def test_without_pytest_asyncio_only_the_tests_using_the_fixtures_fail_and_say_why(
        pytester: pytest.Pytester) -> None:
    # A core install beside pytest: pytest-asyncio neither importable nor loaded. pytest
    # still imports the plugin by its entry point; the run must not abort.
    pytester.makepyfile(test_core="""
        def test_unrelated():
            assert 1 + 1 == 2

        def test_wants_the_sandbox(oxlin_sandbox):
            pass
    """)
    # Ahead of site-packages on the path, importing pytest_asyncio fails as if absent.
    pytester.makepyfile(pytest_asyncio="""
        raise ModuleNotFoundError("No module named 'pytest_asyncio'", name="pytest_asyncio")
    """)
    result = run(pytester, "-p", "no:asyncio", "-rE", "test_core.py")
    result.assert_outcomes(passed=1, errors=1)
    assert ("the oxlin_sandbox fixture needs pytest-asyncio, which is not installed: "
            "pip install 'oxlin-async[testing]'") in result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED


async def test_the_fixtures_work_in_this_suite_too(oxlin_sandbox: OxlinSandbox,
                                                   oxlin_client: ox.OxlinClient) -> None:
    assert len(oxlin_sandbox.users) == pytest_plugin.DEFAULT_SANDBOX_OPTIONS["users"]
    user = oxlin_sandbox.users[0]
    accounts = await oxlin_client.as_user(user.email, user.password).accounts.list().collect()
    assert sorted(a.id for a in accounts) == sorted(
        str(i) for i in oxlin_sandbox.state.data(int(user.id)).accounts)
    async with aiohttp.ClientSession() as http, http.get(oxlin_sandbox.api_url) as response:
        assert response.status == 404  # it is serving


@pytest.mark.oxlin_sandbox(users=1, seed=3, transactions_per_account=4)
async def test_the_marker_in_this_suite(oxlin_sandbox: OxlinSandbox) -> None:
    assert len(oxlin_sandbox.users) == 1
    data = oxlin_sandbox.state.data(int(oxlin_sandbox.users[0].id))
    assert {len(txs) for txs in data.transactions.values()} == {4}
