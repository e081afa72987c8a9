"""``store_factory``: every backend behind one fixture, so the contract suite runs unchanged.

``embedded`` is a real DuckDB file per store in the test's tmp dir; ``influxdb`` is a real
``influxd`` provided by the ``influx_store_factory`` fixture of tests/fixtures/influxd.py. If that
fixture is missing the influxdb cases FAIL (they never skip silently): run ``-k embedded`` to
work on the embedded backend alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from store.base import Store
from store.embedded import EmbeddedStore

StoreFactory = Callable[[], Store]


@pytest.fixture
def embedded_store_factory(tmp_path: Path) -> Iterator[Callable[[], EmbeddedStore]]:
    made: list[EmbeddedStore] = []
    counter = itertools.count()

    def make() -> EmbeddedStore:
        store = EmbeddedStore(tmp_path / f"readings-{next(counter)}.duckdb")
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture(params=["embedded", "influxdb"])
def store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    """A callable returning a fresh, empty store of the parametrised backend each call."""
    if request.param == "embedded":
        factory: StoreFactory = request.getfixturevalue("embedded_store_factory")
        return factory
    try:
        factory = request.getfixturevalue("influx_store_factory")
    except pytest.FixtureLookupError:
        pytest.fail(
            "the influxdb backend needs the 'influx_store_factory' fixture from "
            "tests/fixtures/influxd.py (loaded by tests/conftest.py); it is not available",
            pytrace=False,
        )
    return factory
