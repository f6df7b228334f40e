"""Store fixtures (imported by conftest.py): a throwaway PostgreSQL cluster and a ``db_url`` per test.

The cluster is Debian's PostgreSQL 15 (``initdb``/``pg_ctl`` from /usr/lib/postgresql/15/bin) in a temp
dir on a free port, started once per session and torn down after it. ``initdb`` refuses to run as
root, so as root it runs as the ``postgres`` user through ``runuser`` and the temp dir belongs to it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from test_server_support import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
_counter = itertools.count()


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def pg_cluster() -> Iterator[tuple[str, Callable[[], None]]]:
    """(URL without database, stop()) of a fresh throwaway cluster; removed on exit."""
    if not (PG_BIN / "initdb").is_file():
        pytest.fail(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing): apt-get install postgresql "
                    "(.ci/run does this)")
    root = Path(tempfile.mkdtemp(prefix="treadle-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, port = root / "data", free_port()
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                 "-E", "UTF8", "--locale=C", "--no-sync"]), check=True, capture_output=True)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", opts,
                                 "-w", "-t", "120", "start"]), check=True, capture_output=True)
    def stop() -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)

    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}", stop
    finally:
        stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """``postgresql+psycopg://postgres@127.0.0.1:PORT`` of a fresh cluster (no database part)."""
    with pg_cluster() as (url, _):
        yield url


def new_pg_database(server: str) -> str:
    import psycopg

    name = f"t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server.replace("+psycopg", "") + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL: a SQLite file, then a new PostgreSQL database (the same test runs on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'treadle.db'}"
    return new_pg_database(request.getfixturevalue("postgres_server"))


@pytest.fixture(scope="session", autouse=True)
def isolated_default_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Servers started by tests log to a session temp database, never to ~/.cache/treadle/treadle.db."""
    old = os.environ.get("TREADLE_DB")
    os.environ["TREADLE_DB"] = f"sqlite:///{tmp_path_factory.mktemp('default-store') / 'treadle.db'}"
    yield
    if old is None:
        os.environ.pop("TREADLE_DB", None)
    else:
        os.environ["TREADLE_DB"] = old
