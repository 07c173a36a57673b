"""`make bench-profile`: the callgrind profile of a cached read runs and counts something sane.

Two instrumented runs of a few reads (about two minutes): the profile's own machinery, not its figures.
"""

import pytest

from bench.profile import per_read
from tests.support import project_env
from tests.support.postgres import dataset_database, psql

pytestmark = pytest.mark.e2e

DATABASE = "titanic_test_profile"


def test_a_cached_read_costs_between_a_hundred_thousand_and_ten_million_instructions():
    with dataset_database(DATABASE) as url:
        path = "/people/" + psql("SELECT uuid FROM passengers_passenger LIMIT 1", database=DATABASE)
        env = project_env(DATABASE_URL=url, DJANGO_ALLOWED_HOSTS="127.0.0.1", LOG_FORMAT="json")
        counted = per_read(20, path, None, (), env)
    assert 100_000 < counted < 10_000_000
