"""Ticket databases for the alert tests: a SQLite file and a schema of its own in the running
PostgreSQL (so parallel runs and other suites never see each other's tables)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from alerts import TicketStore

PG_URL = os.environ.get(
    "FACMON_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextlib.contextmanager
def _pg_schema() -> Iterator[str]:
    admin = sa.create_engine(PG_URL)
    schema = f"facmon_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as c:
            c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as e:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {PG_URL} is required for these tests: {e}")
    try:
        # search_path puts every table of this test in its own schema.
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{os.path.join(tmp_path, 'tickets.db')}"
        return
    with _pg_schema() as url:
        yield url


@pytest.fixture
def tickets(db_url: str) -> Iterator[TicketStore]:
    """A ticket store on each database of ``db_url``; a test module may define its own."""
    store = TicketStore(db_url)
    yield store
    store.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with _pg_schema() as url:
        yield url
