from django.http import QueryDict
from rest_framework import serializers

from passengers.models import AGE_MAX, SMALLINT_MAX, Passenger


def person(passenger):
    """The contract's JSON form of a passenger (a model instance or a PersonRow)."""
    age = passenger.age
    return {
        "uuid": str(passenger.uuid),
        "survived": bool(passenger.survived),
        "passengerClass": passenger.passenger_class,
        "name": passenger.name,
        "sex": passenger.sex,
        "age": int(age) if float(age).is_integer() else float(age),
        "siblingsOrSpousesAboard": passenger.siblings_or_spouses_aboard,
        "parentsOrChildrenAboard": passenger.parents_or_children_aboard,
        "fare": float(passenger.fare),
    }


class StrictJSONTypes:
    """Reject JSON values of the wrong type instead of coercing them ("1" is not 1, 1 is not true).

    HTML and multipart forms (the browsable API) send every value as a string, so they are
    converted as usual.
    """

    json_types: tuple[type, ...] = ()

    def to_internal_value(self, data):
        from_form = isinstance(getattr(self.root, "initial_data", None), QueryDict)
        if not from_form and (
            isinstance(data, bool) != (bool in self.json_types) or not isinstance(data, self.json_types)
        ):
            self.fail("wrong_type", expected=self.expected)
        return super().to_internal_value(data)


def _strict(field_class, json_types, expected):
    return type(
        f"Strict{field_class.__name__}",
        (StrictJSONTypes, field_class),
        {
            "json_types": json_types,
            "expected": expected,
            "default_error_messages": {"wrong_type": "Must be {expected}."},
        },
    )


StrictBooleanField = _strict(serializers.BooleanField, (bool,), "a JSON boolean (true or false)")
StrictIntegerField = _strict(serializers.IntegerField, (int,), "a JSON integer")
StrictFloatField = _strict(serializers.FloatField, (int, float), "a JSON number")
StrictCharField = _strict(serializers.CharField, (str,), "a JSON string")
StrictChoiceField = _strict(serializers.ChoiceField, (str,), "a JSON string")
StrictIntegerChoiceField = _strict(serializers.ChoiceField, (int,), "a JSON integer")


class PassengerSerializer(serializers.ModelSerializer):
    survived = StrictBooleanField()
    passengerClass = StrictIntegerChoiceField(source="passenger_class", choices=Passenger.PassengerClass.values)
    name = StrictCharField(max_length=Passenger._meta.get_field("name").max_length)
    sex = StrictChoiceField(choices=Passenger.Sex.values)
    age = StrictFloatField(min_value=0, max_value=AGE_MAX)
    siblingsOrSpousesAboard = StrictIntegerField(
        source="siblings_or_spouses_aboard", min_value=0, max_value=SMALLINT_MAX
    )
    parentsOrChildrenAboard = StrictIntegerField(
        source="parents_or_children_aboard", min_value=0, max_value=SMALLINT_MAX
    )
    fare = StrictFloatField(min_value=0)

    class Meta:
        model = Passenger
        fields = [
            "uuid",
            "survived",
            "passengerClass",
            "name",
            "sex",
            "age",
            "siblingsOrSpousesAboard",
            "parentsOrChildrenAboard",
            "fare",
        ]
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
