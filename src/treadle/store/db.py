"""Opening the store: engine and session factory, SQLite settings, migrations applied on open.

``open_store(url)`` creates the SQLite file's folder, sets WAL journaling (``synchronous=NORMAL``: a
committed transaction survives a process crash), a busy timeout and foreign keys on every connection,
then runs ``alembic upgrade head`` under a lock (a file lock for SQLite, an advisory lock for
PostgreSQL), so several processes may open one database at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

ENV_VAR = "TREADLE_DB"
MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_ID = 7_240_015  # pg_advisory_lock key for migrations


def default_url() -> str:
    """``$TREADLE_DB``, else SQLite at ``~/.cache/treadle/treadle.db`` (beside the converted models)."""
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    from treadle.models.registry import cache_root

    return f"sqlite:///{cache_root() / 'treadle.db'}"


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///") or url in ("sqlite://", "sqlite:///:memory:"):
        return None
    return Path(url[len("sqlite:///"):]).expanduser()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Store:
    """An engine and its session factory. Thread-safe: every thread opens its own sessions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error (the commit happens before this returns)."""
        with self.sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str | None = None, migrate: bool = True) -> Store:
    """Open (and migrate to the newest schema) the store at ``url`` (default: :func:`default_url`)."""
    url = url or default_url()
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not (url.startswith("sqlite:") or url.startswith("postgresql+psycopg:")):
        raise ValueError(f"--db must be a sqlite:///PATH or postgresql+psycopg://... URL, got {url!r}")
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite:"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    store = Store(engine)
    if migrate:
        with _migration_lock(store, path):
            upgrade(store)
    return store


@contextlib.contextmanager
def _migration_lock(store: Store, path: Path | None) -> Iterator[None]:
    if path is not None:
        with open(f"{path}.migrate.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield
        return
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_ID})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_ID})
        return
    yield


def alembic_config(store: Store):  # noqa: ANN201 - alembic.config.Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", store.url.replace("%", "%%"))
    return cfg


def upgrade(store: Store, revision: str = "head") -> None:
    """Apply the packaged migrations up to ``revision`` (idempotent)."""
    from alembic import command

    cfg = alembic_config(store)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(store: Store) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
