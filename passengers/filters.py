from django import forms
from django_filters import rest_framework as filters

from passengers.models import Passenger


class FloatFilter(filters.NumberFilter):
    field_class = forms.FloatField  # finite floats only: NaN, inf and 1e999 are rejected


class PassengerFilter(filters.FilterSet):
    survived = filters.TypedChoiceFilter(
        choices=[("true", "true"), ("false", "false")], coerce=lambda value: value == "true"
    )
    passengerClass = filters.TypedChoiceFilter(
        field_name="passenger_class", choices=Passenger.PassengerClass.choices, coerce=int
    )
    sex = filters.ChoiceFilter(choices=Passenger.Sex.choices)
    ageMin = FloatFilter(field_name="age", lookup_expr="gte", label="Minimum age (inclusive)")
    ageMax = FloatFilter(field_name="age", lookup_expr="lte", label="Maximum age (inclusive)")
    fareMin = FloatFilter(field_name="fare", lookup_expr="gte", label="Minimum fare (inclusive)")
    fareMax = FloatFilter(field_name="fare", lookup_expr="lte", label="Maximum fare (inclusive)")
    search = filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")
    ordering = filters.OrderingFilter(
        fields=(
            ("name", "name"),
            ("age", "age"),
            ("fare", "fare"),
            ("passenger_class", "passengerClass"),
            ("survived", "survived"),
            ("sex", "sex"),
            ("created_at", "createdAt"),
            ("updated_at", "updatedAt"),
        )
    )

    class Meta:
        model = Passenger
        fields: list[str] = []
