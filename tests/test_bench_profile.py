"""`make bench-profile`: the callgrind profile of a cached read runs and counts something sane.

Two instrumented runs of a few reads (about two minutes): the profile's own machinery, not its figures.
"""

import pytest

from bench.profile import per_read, profile_env
from tests.harness.postgres import dataset_database, psql

pytestmark = pytest.mark.e2e

DATABASE = "titanic_test_profile"


def test_a_cached_read_costs_between_a_hundred_thousand_and_ten_million_instructions():
    with dataset_database(DATABASE) as url:
        path = "/people/" + psql("SELECT uuid FROM passengers_passenger LIMIT 1", database=DATABASE)
        counted = per_read(20, path, None, (), profile_env(url))
    assert 100_000 < counted < 10_000_000
