"""A faithful local Oxlin: auth, API and widget hosts, the Linxo test bank, fault injection.

Use it like stripe-mock or moto, from tests or from the command line
(``python -m oxlin_async.testing``)::

    async with OxlinSandbox(users=3, seed=7) as sandbox:
        async with OxlinClient(sandbox.client_id, sandbox.client_secret,
                               environment=sandbox.environment) as client:
            ...
"""

from ._faults import Faults
from ._ratelimit import RateLimit
from ._sandbox import OxlinSandbox, SandboxUser
from ._state import EmulatorState, UserData
from ._testbank import TestBank, TestBankError, bundled_testbanks, load_testbank, parse_testbank

__all__ = [
    "EmulatorState",
    "Faults",
    "OxlinSandbox",
    "RateLimit",
    "SandboxUser",
    "TestBank",
    "TestBankError",
    "UserData",
    "bundled_testbanks",
    "load_testbank",
    "parse_testbank",
]
