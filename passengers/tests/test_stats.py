"""GET /people/stats checked against numbers computed here, independently, from the CSV."""

import csv
from collections import defaultdict

import pytest
from django.conf import settings

from passengers.tests.factories import PassengerFactory

REAL_CSV = settings.BASE_DIR / "fixtures" / "titanic.csv"


def csv_passengers():
    with REAL_CSV.open(newline="", encoding="utf-8") as stream:
        return [
            {
                "survived": row["Survived"] == "1",
                "class": int(row["Pclass"]),
                "sex": row["Sex"],
                "age": float(row["Age"]),
            }
            for row in csv.DictReader(stream)
        ]


def survival(group):
    total, survived = len(group), sum(passenger["survived"] for passenger in group)
    return {"total": total, "survived": survived, "survivalRate": round(survived / total, 4) if total else None}


def grouped(passengers, key):
    groups = defaultdict(list)
    for passenger in passengers:
        groups[key(passenger)].append(passenger)
    return sorted(groups.items())


def expected_stats(passengers):
    return {
        **survival(passengers),
        "byClass": [
            {"passengerClass": cls, **survival(group)} for cls, group in grouped(passengers, lambda p: p["class"])
        ],
        "bySex": [{"sex": sex, **survival(group)} for sex, group in grouped(passengers, lambda p: p["sex"])],
        "byAgeBand": [
            {"ageBand": f"{start}-{start + 9}", "ageFrom": start, "ageTo": start + 10, **survival(group)}
            for start, group in grouped(passengers, lambda p: int(p["age"] // 10) * 10)
        ],
    }


def test_stats_of_the_real_file(api_client, loaded_passengers):
    response = api_client.get("/people/stats")

    assert response.status_code == 200
    assert response.json() == expected_stats(csv_passengers())
    assert response.json()["total"] == 887
    assert response.json()["survived"] == 342
    assert response.json()["survivalRate"] == 0.3856


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        ("sex=female", lambda p: p["sex"] == "female"),
        ("passengerClass=1", lambda p: p["class"] == 1),
        ("survived=false", lambda p: not p["survived"]),
        ("ageMin=18&ageMax=30", lambda p: 18 <= p["age"] <= 30),
        (
            "sex=male&passengerClass=3&ageMax=9.99",
            lambda p: p["sex"] == "male" and p["class"] == 3 and p["age"] <= 9.99,
        ),
    ],
)
def test_filters_apply_to_stats(api_client, loaded_passengers, query, keep):
    response = api_client.get(f"/people/stats?{query}")
    assert response.status_code == 200
    expected = expected_stats([p for p in csv_passengers() if keep(p)])
    assert 0 < expected["total"] < 887
    assert response.json() == expected


def test_search_applies_to_stats(api_client, loaded_passengers):
    response = api_client.get("/people/stats/?search=braund")  # trailing slash too
    assert response.status_code == 200
    assert response.json()["total"] == 2  # Mr. Owen Harris Braund and Mr. Lewis Richard Braund
    assert response.json()["survived"] == 0


def test_stats_of_an_empty_database(api_client, db):
    response = api_client.get("/people/stats")
    assert response.status_code == 200
    assert response.json() == {
        "total": 0,
        "survived": 0,
        "survivalRate": None,
        "byClass": [],
        "bySex": [],
        "byAgeBand": [],
    }


def test_a_filter_that_matches_nothing_gives_zero_totals(api_client, loaded_passengers):
    body = api_client.get("/people/stats?sex=other").json()
    assert (body["total"], body["survived"], body["survivalRate"]) == (0, 0, None)


def test_age_band_edges_and_the_other_sex(api_client, db):
    for age, survived in [(0.42, True), (9.99, False), (10, True), (19.5, True), (150, False)]:
        PassengerFactory(age=age, survived=survived, sex="other", passenger_class=2)

    body = api_client.get("/people/stats").json()

    assert [(band["ageBand"], band["total"], band["survived"]) for band in body["byAgeBand"]] == [
        ("0-9", 2, 1),
        ("10-19", 2, 2),
        ("150-159", 1, 0),
    ]
    assert body["bySex"] == [{"sex": "other", "total": 5, "survived": 3, "survivalRate": 0.6}]
    assert body["byClass"] == [{"passengerClass": 2, "total": 5, "survived": 3, "survivalRate": 0.6}]


def test_stats_follow_writes(api_client, loaded_passengers, editor_client):
    before = api_client.get("/people/stats").json()
    braund = api_client.get("/people?search=Owen Harris Braund").json()[0]
    assert editor_client.patch(f"/people/{braund['uuid']}", {"survived": True}, format="json").status_code == 200

    after = api_client.get("/people/stats").json()
    assert after["survived"] == before["survived"] + 1


def test_a_bad_filter_is_a_400(api_client, db):
    response = api_client.get("/people/stats?sex=unknown")
    assert response.status_code == 400
    assert "sex" in response.json()
