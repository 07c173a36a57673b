"""The Django admin, for data fixes: list, search, filters, sorting, edits with history, validation."""

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse

from passengers.models import Passenger
from passengers.tests.factories import PassengerFactory

CHANGELIST = "admin:passengers_passenger_changelist"


def change_url(passenger):
    return reverse("admin:passengers_passenger_change", args=[passenger.pk])


def listed(response):
    """The passengers the changelist shows, in order."""
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def form_data(passenger, **changes):
    data = {
        "survived": "on" if passenger.survived else "",
        "passenger_class": passenger.passenger_class,
        "name": passenger.name,
        "sex": passenger.sex,
        "age": passenger.age,
        "siblings_or_spouses_aboard": passenger.siblings_or_spouses_aboard,
        "parents_or_children_aboard": passenger.parents_or_children_aboard,
        "fare": passenger.fare,
        **changes,
    }
    return {key: value for key, value in data.items() if value != ""}  # an unticked checkbox is not sent


@pytest.fixture
def passengers(db):
    return [
        PassengerFactory(
            name="Mr. Owen Harris Braund", passenger_class=3, sex="male", survived=False, age=22, fare=7.25
        ),
        PassengerFactory(
            name="Mrs. Florence Cumings", passenger_class=1, sex="female", survived=True, age=38, fare=71.28
        ),
        PassengerFactory(
            name="Miss. Laina Heikkinen", passenger_class=3, sex="female", survived=True, age=26, fare=7.93
        ),
        PassengerFactory(
            name="Master. Gosta Palsson", passenger_class=3, sex="male", survived=False, age=2, fare=21.08
        ),
        PassengerFactory(name="Dr. Alex Other", passenger_class=2, sex="other", survived=True, age=0.42, fare=13.0),
    ]


def test_the_changelist_lists_passengers(admin_client, passengers):
    response = admin_client.get(reverse(CHANGELIST))
    assert {passenger.name for passenger in listed(response)} == {passenger.name for passenger in passengers}
    assert "Mr. Owen Harris Braund" in response.content.decode()


def test_the_changelist_of_the_real_dataset_pages(admin_client, loaded_passengers):
    response = admin_client.get(reverse(CHANGELIST))
    assert response.context["cl"].result_count == 887
    assert len(listed(response)) == 50
    assert "887 passengers" in response.content.decode()


def test_search_by_name(admin_client, passengers):
    response = admin_client.get(reverse(CHANGELIST), {"q": "braund"})
    assert [passenger.name for passenger in listed(response)] == ["Mr. Owen Harris Braund"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"passenger_class__exact": "1"}, {"Mrs. Florence Cumings"}),
        ({"passenger_class__exact": "3", "sex__exact": "male"}, {"Mr. Owen Harris Braund", "Master. Gosta Palsson"}),
        ({"sex__exact": "other"}, {"Dr. Alex Other"}),
        ({"survived__exact": "1"}, {"Mrs. Florence Cumings", "Miss. Laina Heikkinen", "Dr. Alex Other"}),
        ({"survived__exact": "0", "sex__exact": "female"}, set()),
    ],
)
def test_filters_by_class_sex_and_survived(admin_client, passengers, query, expected):
    assert {passenger.name for passenger in listed(admin_client.get(reverse(CHANGELIST), query))} == expected


def test_the_filters_are_offered(admin_client, passengers):
    filters = [spec.title for spec in admin_client.get(reverse(CHANGELIST)).context["cl"].filter_specs]
    assert filters == ["passenger class", "sex", "survived"]


@pytest.mark.parametrize(
    ("order", "key", "reverse_order"),
    [("4", "age", False), ("-6", "fare", True), ("1", "name", False), ("-1", "name", True)],
)
def test_sorting_by_a_column(admin_client, passengers, order, key, reverse_order):
    # o=N sorts by the Nth column of list_display: name, class, sex, age, survived, fare, updated
    values = [getattr(passenger, key) for passenger in listed(admin_client.get(reverse(CHANGELIST), {"o": order}))]
    assert values == sorted(values, reverse=reverse_order)
    assert len(values) == 5


def test_an_edit_saves_and_is_in_the_history(admin_client, admin_user, passengers):
    braund = passengers[0]

    response = admin_client.post(change_url(braund), form_data(braund, fare="8.05", survived="on"))

    assert response.status_code == 302
    braund.refresh_from_db()
    assert (braund.fare, braund.survived) == (8.05, True)
    entry = LogEntry.objects.get(object_id=str(braund.pk))
    assert (entry.user, entry.action_flag) == (admin_user, CHANGE)
    assert "Fare" in entry.get_change_message() and "Survived" in entry.get_change_message()
    history = admin_client.get(reverse("admin:passengers_passenger_history", args=[braund.pk]))
    assert history.status_code == 200
    assert "Changed Survived and Fare." in history.content.decode()


def test_an_edit_shows_up_in_the_api(admin_client, api_client, passengers):
    braund = passengers[0]
    assert api_client.get("/people").json()  # the list is cached now
    admin_client.post(change_url(braund), form_data(braund, age="23.5"))
    assert api_client.get(f"/people/{braund.pk}").json()["age"] == 23.5
    assert [person["age"] for person in api_client.get("/people?search=braund").json()] == [23.5]


def test_the_change_form_shows_identity_and_timestamps_read_only(admin_client, passengers):
    form = admin_client.get(change_url(passengers[0])).context["adminform"].form
    assert "uuid" not in form.fields and "created_at" not in form.fields and "updated_at" not in form.fields
    assert str(passengers[0].pk) in admin_client.get(change_url(passengers[0])).content.decode()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("age", "200"),
        ("age", "-1"),
        ("age", "nan"),
        ("fare", "-1"),
        ("fare", "inf"),
        ("fare", "10000.5"),
        ("fare", "1e308"),
        ("name", "Mr. A\r\nForged"),
        ("name", "Mr. \u202eA"),
        ("name", "Mr.\tA"),
        ("name", ""),
        ("name", "   "),
        ("name", "x" * 201),
        ("passenger_class", "4"),
        ("passenger_class", "0"),
        ("sex", "unknown"),
        ("siblings_or_spouses_aboard", "-1"),
        ("parents_or_children_aboard", "1.5"),
    ],
)
def test_an_invalid_edit_is_rejected_and_changes_nothing(admin_client, passengers, field, value):
    braund = passengers[0]
    before = Passenger.objects.filter(pk=braund.pk).values().get()

    response = admin_client.post(change_url(braund), {**form_data(braund), field: value})

    assert response.status_code == 200  # the form again, not a redirect
    assert field in response.context["adminform"].form.errors
    assert "Please correct the error below." in response.content.decode()
    assert Passenger.objects.filter(pk=braund.pk).values().get() == before
    assert not LogEntry.objects.exists()


def test_adding_a_passenger(admin_client, passengers):
    new = Passenger(name="Mr. New", passenger_class=2, sex="male", survived=False, age=30, fare=10.5)
    new.siblings_or_spouses_aboard = new.parents_or_children_aboard = 0
    response = admin_client.post(reverse("admin:passengers_passenger_add"), form_data(new))
    assert response.status_code == 302
    assert Passenger.objects.get(name="Mr. New").fare == 10.5


def test_an_anonymous_user_is_sent_to_the_login_page(api_client, passengers):
    for url in [reverse(CHANGELIST), change_url(passengers[0]), reverse("admin:index")]:
        response = api_client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_an_anonymous_post_changes_nothing(api_client, passengers):
    braund = passengers[0]
    response = api_client.post(change_url(braund), form_data(braund, fare="99"))
    assert response.status_code == 302
    braund.refresh_from_db()
    assert braund.fare == 7.25


def test_a_staff_user_without_permission_is_refused(api_client, passengers, django_user_model):
    django_user_model.objects.create_user("staff", password="a-long-test-password", is_staff=True)
    api_client.force_login(django_user_model.objects.get(username="staff"))
    assert api_client.get(reverse(CHANGELIST)).status_code == 403
