from collections.abc import Callable
from typing import Any

from django.http import QueryDict
from rest_framework import serializers

from passengers.models import (
    AGE_MAX,
    CONTRACT_FIELDS,
    FARE_MAX,
    NAME_MAX_LENGTH,
    SMALLINT_MAX,
    Passenger,
    validate_name_characters,
)


def _age(value):
    """Integral ages render as integers (22), the others as decimals (0.42)."""
    return int(value) if float(value).is_integer() else float(value)


# How a contract field's JSON value is made from the model's; the others are shown as they are.
RENDER: dict[str, Callable[[Any], Any]] = {"uuid": str, "survived": bool, "age": _age, "fare": float}
_RENDERED_FIELDS = [(name, field, RENDER.get(name)) for name, field in CONTRACT_FIELDS.items()]


def person(passenger):
    """The contract's JSON form of a passenger (a model instance or a PersonRow)."""
    data = {}
    for name, field, render in _RENDERED_FIELDS:
        value = getattr(passenger, field)
        data[name] = render(value) if render else value
    return data


class StrictJSONTypes(serializers.Field):
    """Reject JSON values of the wrong type instead of coercing them ("1" is not 1, 1 is not true).

    HTML and multipart forms (the browsable API) send every value as a string, so they are
    converted as usual.
    """

    json_types: tuple[type, ...] = ()
    expected = ""
    default_error_messages = {"wrong_type": "Must be {expected}."}

    def to_internal_value(self, data):
        from_form = isinstance(getattr(self.root, "initial_data", None), QueryDict)
        if not from_form and (
            isinstance(data, bool) != (bool in self.json_types) or not isinstance(data, self.json_types)
        ):
            self.fail("wrong_type", expected=self.expected)
        return super().to_internal_value(data)


class StrictBooleanField(StrictJSONTypes, serializers.BooleanField):
    json_types = (bool,)
    expected = "a JSON boolean (true or false)"


class StrictIntegerField(StrictJSONTypes, serializers.IntegerField):
    json_types = (int,)
    expected = "a JSON integer"


class StrictFloatField(StrictJSONTypes, serializers.FloatField):
    json_types = (int, float)
    expected = "a JSON number"


class StrictCharField(StrictJSONTypes, serializers.CharField):
    json_types = (str,)
    expected = "a JSON string"


class StrictChoiceField(StrictJSONTypes, serializers.ChoiceField):
    json_types = (str,)
    expected = "a JSON string"


class StrictIntegerChoiceField(StrictJSONTypes, serializers.ChoiceField):
    json_types = (int,)
    expected = "a JSON integer"


def _source(name):
    """source= for a contract field whose JSON name is not the model field's."""
    return {"source": CONTRACT_FIELDS[name]} if CONTRACT_FIELDS[name] != name else {}


class PassengerSerializer(serializers.ModelSerializer):
    survived = StrictBooleanField()
    passengerClass = StrictIntegerChoiceField(**_source("passengerClass"), choices=Passenger.PassengerClass.values)
    name = StrictCharField(max_length=NAME_MAX_LENGTH, validators=[validate_name_characters])
    sex = StrictChoiceField(choices=Passenger.Sex.values)
    age = StrictFloatField(min_value=0, max_value=AGE_MAX)
    siblingsOrSpousesAboard = StrictIntegerField(
        **_source("siblingsOrSpousesAboard"), min_value=0, max_value=SMALLINT_MAX
    )
    parentsOrChildrenAboard = StrictIntegerField(
        **_source("parentsOrChildrenAboard"), min_value=0, max_value=SMALLINT_MAX
    )
    fare = StrictFloatField(min_value=0, max_value=FARE_MAX)

    class Meta:
        model = Passenger
        fields = list(CONTRACT_FIELDS)
        read_only_fields = ["uuid"]

    def to_representation(self, instance):
        return person(instance)


class SurvivalSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    survived = serializers.IntegerField()
    survivalRate = serializers.FloatField(allow_null=True, help_text="survived / total; null when total is 0")


class ClassSurvivalSerializer(SurvivalSerializer):
    passengerClass = serializers.IntegerField()


class SexSurvivalSerializer(SurvivalSerializer):
    sex = serializers.CharField()


class AgeBandSurvivalSerializer(SurvivalSerializer):
    ageBand = serializers.CharField(help_text='e.g. "20-29": age >= 20 and < 30')
    ageFrom = serializers.IntegerField()
    ageTo = serializers.IntegerField(help_text="exclusive")


class StatsSerializer(SurvivalSerializer):
    byClass = ClassSurvivalSerializer(many=True)
    bySex = SexSurvivalSerializer(many=True)
    byAgeBand = AgeBandSurvivalSerializer(many=True)
