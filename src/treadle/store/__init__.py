"""Treadle's one SQL store: interactions, feedback, API keys, reviews, datasets (and, later, the registry and
loop state). SQLAlchemy 2 models in :mod:`treadle.store.models`; Alembic migrations ship inside the package
and are applied when a store is opened. SQLite (WAL) is the embedded default, PostgreSQL
(``postgresql+psycopg://``) the production choice.
"""

from treadle.store.db import Store, default_url, open_store

__all__ = ["Store", "default_url", "open_store"]
