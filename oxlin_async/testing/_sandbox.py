"""`OxlinSandbox`: the emulator as an async context manager, on a real socket."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from ._faults import Faults
from ._population import Population
from ._records import Client
from ._server import build_app
from ._state import EmulatorState
from ._testbank import apply_testbank, load_testbank

if TYPE_CHECKING:
    from ..environments import Environment


@attrs.frozen
class SandboxUser:
    """A seeded user's credentials (and id, for checking against the ground truth)."""

    id: str
    email: str
    password: str = attrs.field(repr=False)


class OxlinSandbox:
    """A local Oxlin (auth, API and widget hosts) serving a seeded population.

    ``async with OxlinSandbox(users=3, seed=7) as sandbox:`` starts it on 127.0.0.1 (a free
    port unless `port` is given); ``sandbox.environment`` points an `OxlinClient` at it,
    ``sandbox.users`` holds the seeded users' credentials, ``sandbox.state`` is the ground
    truth and ``sandbox.faults`` what goes wrong. ``peer_shapes=True`` makes it answer with
    the shapes public connectors observe instead of the reference's (docs/oxlin-api §15).
    """

    def __init__(
        self,
        *,
        users: int = 0,
        seed: int = 0,
        accounts_per_user: int = 3,
        transactions_per_account: int = 100,
        testbanks: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_lifetime: int = 3600,
        faults: Faults | None = None,
        peer_shapes: bool = False,
    ) -> None:
        rng = random.Random(f"oxlin-sandbox:{seed}")
        self.client_id = client_id or str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.client_secret = client_secret or f"{rng.getrandbits(80):020x}"
        self.state = EmulatorState(token_lifetime=token_lifetime)
        self.state.add_client(Client(self.client_id, self.client_secret))
        self.faults = faults if faults is not None else Faults(seed=seed)
        if peer_shapes:  # shorthand for Faults(peer_shapes=True): docs/oxlin-api §15
            self.faults.peer_shapes = True
        self.population = Population(self.state, users=users, seed=seed,
                                     accounts_per_user=accounts_per_user,
                                     transactions_per_account=transactions_per_account)
        self.state.attach_population(self.population)
        seeded = [SandboxUser(str(u.id), u.email, u.password) for u in self.population.users]
        for name in testbanks:
            bank = load_testbank(name)
            digest = hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:12]
            stem = name.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".txt")
            email = f"{stem.replace('_', '.')}.{digest[:6]}@testbank.example.com"
            user = self.state.create_user(email, f"tb-{digest}")
            apply_testbank(self.state, user.id, bank)
            seeded.append(SandboxUser(str(user.id), user.email, user.password))
        self.users: list[SandboxUser] = seeded
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._base: str | None = None

    # lifecycle ----------------------------------------------------------------------
    async def start(self) -> OxlinSandbox:
        if self._runner is not None:
            return self
        app = build_app(self.state, self.faults)
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self._port = sock.getsockname()[1]
        self._base = f"http://{self._host}:{self._port}"
        self.state.base_url = self._base
        return self

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> OxlinSandbox:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # where it is --------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._base is None:
            raise RuntimeError("the sandbox is not started; use `async with OxlinSandbox()`")
        return self._base

    @property
    def port(self) -> int:
        self.base_url  # noqa: B018 - raises when not started
        return self._port

    @property
    def auth_url(self) -> str:
        return f"{self.base_url}/auth"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v2.1"

    @property
    def embed_url(self) -> str:
        return f"{self.base_url}/embed/v2.1"

    @property
    def embed_origin(self) -> str:
        return f"{self.base_url}/embed"

    @property
    def environment(self) -> Environment:
        from ..environments import Environment

        return Environment(auth_url=self.auth_url, api_url=self.api_url,
                           embed_url=self.embed_url)

    # control ------------------------------------------------------------------------
    def set_faults(self, faults: Faults | None = None, **changes: Any) -> Faults:
        """Replace the fault settings (a new `Faults`, or some fields) while serving."""
        new = faults if faults is not None else attrs.evolve(self.faults, **changes)
        self.faults.update(new)
        return self.faults

    async def complete_widget(self, add_connection_url: str, *, login: str = "dev",
                              password: str = "dev", channel: str = "EMBEDDED",
                              testbank: str | None = None, config: str | None = None) -> str:
        """Play the user in the widget: submit the Linxo test bank's form for the page at
        `add_connection_url` and return the URL the widget redirects the browser to."""
        import aiohttp
        import yarl

        page = yarl.URL(add_connection_url)
        form = {**page.query, "action": "connect", "channel": channel, "login": login,
                "password": password, "attempt": str(2)}  # a wrong login fails at once
        if testbank is not None:
            form["config_name"] = testbank
        if config is not None:
            form["config"] = config
        async with aiohttp.ClientSession() as http, http.post(
                page.with_query(None), data=form, allow_redirects=False) as response:
            location = response.headers.get("Location")
            if response.status != 302 or location is None:
                text = await response.text()
                raise RuntimeError(f"the widget did not redirect ({response.status}): "
                                   f"{text[:300]}")
            return location

    def expire_tokens(self, user_id: str | int | None = None, *, clients: bool = True) -> int:
        """Make access tokens invalid now (every token, or one user's)."""
        return self.state.expire_tokens(None if user_id is None else int(user_id),
                                        clients=clients)

    def __repr__(self) -> str:
        where = self._base or "not started"
        return f"<OxlinSandbox {where} users={len(self.users)} client_id={self.client_id}>"
