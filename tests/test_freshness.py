"""Cached reads never outlive the data, however it changes: psql, `manage.py shell`, a restored dump.

A real gunicorn with several workers (each keeps its own response cache) on a real PostgreSQL.
Before each change every worker has the list and one passenger cached; after it, the next GET of
every worker must show exactly what the database holds.
"""

import json
import subprocess

import pytest

from tests.harness.gunicorn import Gunicorn
from tests.harness.postgres import create_token, database_url, dataset_database, manage, psql, scratch_name

pytestmark = pytest.mark.e2e

DATABASE = scratch_name("freshness")
TABLE = "passengers_passenger"
# The kernel hands new connections to the workers unevenly, more so on a busy machine.
CONNECTIONS = 300
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with (
        dataset_database(DATABASE) as url,
        Gunicorn(tmp_path_factory.mktemp("freshness"), database_url=url, workers=2) as server,
    ):
        yield server


def in_the_database():
    """{uuid: (name, fare)} of every passenger, read with psql."""
    rows = psql(f"SELECT coalesce(json_agg(json_build_array(uuid, name, fare)), '[]') FROM {TABLE}", DATABASE)
    return {uuid: (name, fare) for uuid, name, fare in json.loads(rows)}


def served_by_every_worker(server, uuid, headers=None):
    """What the next GET /people and GET /people/{uuid} of every worker answer, as in_the_database() would."""
    lists = [json.loads(body) for _, _, body in every_worker(server, "/people", headers)]
    details = every_worker(server, f"/people/{uuid}", headers)
    return (
        [{person["uuid"]: (person["name"], person["fare"]) for person in people} for people in lists],
        [(status, json.loads(body)["name"] if status == 200 else None) for _, status, body in details],
    )


def every_worker(server, path, headers=None):
    return server.get_from_every_worker(path, headers=headers, max_connections=CONNECTIONS)


def assert_every_worker_serves_the_database(server, uuid, headers=None):
    lists, details = served_by_every_worker(server, uuid, headers)
    people = in_the_database()
    assert lists == [people] * len(lists)
    assert details == [(200, people[uuid][0]) if uuid in people else (404, None)] * len(details)


@pytest.fixture(autouse=True)
def passengers(server):
    """The dataset, loaded again if a test emptied the table."""
    if not in_the_database():
        manage("loadcsv", url=database_url(DATABASE))


def some_passenger():
    return psql(f"SELECT uuid FROM {TABLE} ORDER BY name LIMIT 1", DATABASE)


CHANGES = {
    "UPDATE": "UPDATE {table} SET name = 'Mr. Changed In Psql', fare = 1.5 WHERE uuid = '{uuid}'",
    "DELETE": "DELETE FROM {table} WHERE uuid = '{uuid}'",
    "INSERT": "INSERT INTO {table} SELECT gen_random_uuid(), survived, passenger_class, 'Mr. Inserted In Psql',"
    " sex, age, siblings_or_spouses_aboard, parents_or_children_aboard, fare, now(), now()"
    " FROM {table} LIMIT 1",
    "TRUNCATE": "TRUNCATE {table}",
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_made_in_psql_is_seen_by_the_next_read_of_every_worker(server, change):
    uuid = some_passenger()
    served_by_every_worker(server, uuid)  # every worker has both cached
    psql(CHANGES[change].format(table=TABLE, uuid=uuid), DATABASE)
    assert_every_worker_serves_the_database(server, uuid)


def test_a_queryset_update_from_manage_py_shell_is_seen_by_the_next_read_of_every_worker(server):
    uuid = some_passenger()
    served_by_every_worker(server, uuid)
    manage(
        "shell",
        "-c",
        f"from passengers.models import Passenger; Passenger.objects.filter(uuid='{uuid}').update(fare=42.5)",
        url=database_url(DATABASE),
    )
    assert_every_worker_serves_the_database(server, uuid)
    assert in_the_database()[uuid][1] == 42.5


def test_a_dump_restored_in_place_never_brings_back_stale_answers(server, tmp_path):
    """A counter would go back with the restore, and the next change would re-use a number whose
    answers (cached after the first change) describe other data."""
    uuid = some_passenger()
    dump = tmp_path / "titanic.dump"
    subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "-Fc", "-f", dump, DATABASE], check=True, capture_output=True
    )
    psql(f"UPDATE {TABLE} SET name = 'Mr. Before The Restore' WHERE uuid = '{uuid}'", DATABASE)
    served_by_every_worker(server, uuid)  # every worker caches the changed data
    subprocess.run(
        ["pg_restore", "-h", "127.0.0.1", "-U", "postgres", "--clean", "--if-exists", "-d", DATABASE, dump],
        check=True,
        capture_output=True,
    )
    assert in_the_database()[uuid][0] != "Mr. Before The Restore"
    assert_every_worker_serves_the_database(server, uuid)
    psql(f"UPDATE {TABLE} SET fare = fare + 1 WHERE uuid <> '{uuid}'", DATABASE)
    assert_every_worker_serves_the_database(server, uuid)


def test_token_reads_see_a_write_and_a_revoked_token_on_every_worker(server):
    token = create_token(database_url(DATABASE), "token-reader", "add_passenger")
    auth = {"Authorization": f"Token {token}"}
    uuid = some_passenger()
    served_by_every_worker(server, uuid, auth)  # every worker has both cached
    person = {**json.loads(server.request("GET", f"/people/{uuid}")[1]), "name": "Mr. Written With A Token"}
    status, created = server.request("POST", "/people", body=json.dumps(person), headers=auth | JSON)
    assert status == 201
    assert_every_worker_serves_the_database(server, json.loads(created)["uuid"], auth)

    psql(f"DELETE FROM authtoken_token WHERE key = '{token}'", DATABASE)
    assert {status for _, status, _ in every_worker(server, "/people", auth)} == {401}
    assert {status for _, status, _ in every_worker(server, "/people")} == {200}
