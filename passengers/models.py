import uuid
from collections import namedtuple

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from titanic.text import UNPRINTABLE

AGE_MAX = 150
SMALLINT_MAX = 32767  # PositiveSmallIntegerField's ceiling on PostgreSQL
NAME_MAX_LENGTH = 200
# About twenty times the highest fare on board (512.3292): a fare is a price, not any float (1e308).
FARE_MAX = 10_000
# A name is one line of readable text: no control characters (CR, LF, tab, ...), line separators or
# bidirectional overrides (titanic.text). The API, the admin (these validators) and loadcsv apply it,
# and a CheckConstraint holds every other way in.
NAME_RULE = (
    "no control characters (such as CR, LF or tab), no U+2028 or U+2029 and no bidirectional formatting characters"
)
validate_name_characters = RegexValidator(UNPRINTABLE, inverse_match=True, message=f"Must contain {NAME_RULE}.")
# The /people contract: its JSON fields in order, each with the model field it shows. The
# serializer, person() and the API tests take the field list from here.
CONTRACT_FIELDS = {
    "uuid": "uuid",
    "survived": "survived",
    "passengerClass": "passenger_class",
    "name": "name",
    "sex": "sex",
    "age": "age",
    "siblingsOrSpousesAboard": "siblings_or_spouses_aboard",
    "parentsOrChildrenAboard": "parents_or_children_aboard",
    "fare": "fare",
}
PERSON_FIELDS = tuple(CONTRACT_FIELDS.values())
PersonRow = namedtuple("PersonRow", PERSON_FIELDS)  # type: ignore[misc]  # fields from the contract


class PassengerClass(models.IntegerChoices):
    FIRST = 1, "1st"
    SECOND = 2, "2nd"
    THIRD = 3, "3rd"


class Sex(models.TextChoices):
    MALE = "male"
    FEMALE = "female"
    OTHER = "other"


class Passenger(models.Model):
    PassengerClass = PassengerClass
    Sex = Sex

    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    survived = models.BooleanField()
    passenger_class = models.PositiveSmallIntegerField(choices=PassengerClass)
    name = models.CharField(max_length=NAME_MAX_LENGTH, validators=[validate_name_characters])
    sex = models.CharField(max_length=6, choices=Sex)
    age = models.FloatField(validators=[MinValueValidator(0), MaxValueValidator(AGE_MAX)])
    siblings_or_spouses_aboard = models.PositiveSmallIntegerField()
    parents_or_children_aboard = models.PositiveSmallIntegerField()
    fare = models.FloatField(validators=[MinValueValidator(0), MaxValueValidator(FARE_MAX)])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "uuid"]
        constraints = [
            models.CheckConstraint(
                condition=Q(passenger_class__in=PassengerClass.values), name="passenger_class_1_to_3"
            ),
            models.CheckConstraint(condition=Q(sex__in=Sex.values), name="passenger_sex_known"),
            models.CheckConstraint(condition=Q(age__gte=0, age__lte=AGE_MAX), name="passenger_age_0_to_150"),
            models.CheckConstraint(
                condition=Q(siblings_or_spouses_aboard__gte=0), name="passenger_siblings_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(parents_or_children_aboard__gte=0), name="passenger_parents_not_negative"
            ),
            models.CheckConstraint(condition=Q(fare__gte=0), name="passenger_fare_not_negative"),
            models.CheckConstraint(condition=Q(fare__lte=FARE_MAX), name="passenger_fare_at_most_10000"),
            models.CheckConstraint(condition=~Q(name=""), name="passenger_name_not_empty"),
            models.CheckConstraint(condition=~Q(name__regex=UNPRINTABLE), name="passenger_name_printable"),
        ]
        indexes = [
            models.Index(fields=["passenger_class", "survived"]),
            models.Index(fields=["sex"]),
            models.Index(fields=["age"]),
            models.Index(fields=["fare"]),
        ]

    def __str__(self):
        return self.name


class DatasetVersion(models.Model):
    """One row (id 1) whose stamp the database itself renews, in the same transaction, on every
    statement that changes the passengers table: API and admin writes, loadcsv, QuerySet.update(),
    raw SQL in psql, TRUNCATE (triggers created by migration 0002).

    Cached responses are keyed by it, so a change is visible to the next read from any worker or
    pod that shares the database. The stamp is random, never a counter: a database restored to an
    earlier state cannot bring back a stamp whose cached responses describe other data. It is read
    by passengers.hot_queries.
    """

    stamp = models.UUIDField(default=uuid.uuid4)

    def __str__(self):
        return f"dataset stamp {self.stamp}"
