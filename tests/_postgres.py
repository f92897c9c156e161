"""A real PostgreSQL server for the tests, started from the machine's binaries
(``pg_config --bindir``: initdb, pg_ctl) in a temporary folder on a free port, once per
session, and torn down at the end. PostgreSQL refuses to run as root: as root (CI), the
server runs as the ``postgres`` system user (.ci/run creates it when missing).

Connections over TCP need a password (scram-sha-256), so the tests see credentials
taken from the URL or from the PG* variables, and can check they are never shown.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from _helpers import closed_port

USER = "oxlin"
PASSWORD = "pw-Zq81-never-shown"


def _bindir() -> str:
    candidates = []
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        candidates.append(subprocess.run(["pg_config", "--bindir"], check=True,
                                         capture_output=True, text=True).stdout.strip())
    # Debian keeps the server's binaries in a versioned folder pg_config may not name
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        if os.access(os.path.join(folder, "initdb"), os.X_OK):
            return folder
    raise RuntimeError("no PostgreSQL server binaries (initdb): install the Debian "
                       "package postgresql (.ci/run does)")


@attrs.frozen
class Server:
    host: str
    port: int
    user: str
    password: str

    def url(self, database: str, *, password: bool = True) -> str:
        secret = f":{self.password}" if password else ""
        return f"postgresql://{self.user}{secret}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True)


@contextlib.contextmanager
def running_server() -> Iterator[Server]:
    bindir = _bindir()
    root = tempfile.mkdtemp(prefix="oxlin-pg-")
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        run_as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    data, log = os.path.join(root, "data"), os.path.join(root, "log")
    pwfile = os.path.join(root, "pw")
    with open(pwfile, "w") as f:
        f.write(PASSWORD + "\n")
    if run_as:
        os.chown(pwfile, run_as["user"], run_as["group"])
    port = closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    def tool(*args: str) -> None:
        subprocess.run([os.path.join(bindir, args[0]), *args[1:]], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=root, **run_as)

    try:
        tool("initdb", "-D", data, "-U", USER, "--pwfile", pwfile, "--auth-local=trust",
             "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C")
        tool("pg_ctl", "start", "-w", "-D", data, "-l", log, "-o",
             f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off")
        try:
            yield Server("127.0.0.1", port, USER, PASSWORD)
        finally:
            tool("pg_ctl", "stop", "-D", data, "-m", "immediate", "-w")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    with running_server() as server:
        yield server


@pytest.fixture
def pg_database(pg_server: Server) -> Iterator[str]:
    """A fresh, empty database of its own for one test (dropped after it)."""
    name = "t_" + uuid.uuid4().hex[:12]
    with pg_server.connect() as db:
        db.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with pg_server.connect() as db:
            db.execute(f"DROP DATABASE {name} WITH (FORCE)")
