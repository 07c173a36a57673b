"""Reads of the passengers through the ORM: the survival statistics and the list's contract fields
(one passenger's: passengers.hot_queries.person_row)."""

from django.db.models import Count, F, Q
from django.db.models.functions import Floor

from passengers.models import PERSON_FIELDS

AGE_BAND_YEARS = 10


def _rate(total, survived):
    return round(survived / total, 4) if total else None


def _survival(row):
    return {"total": row["total"], "survived": row["survived"], "survivalRate": _rate(row["total"], row["survived"])}


def survival_stats(*, queryset):
    """Survival counts and rates overall, by class, by sex and by age band, computed in the database."""
    counts = {"total": Count("pk"), "survived": Count("pk", filter=Q(survived=True))}
    by_class = queryset.values("passenger_class").annotate(**counts).order_by("passenger_class")
    by_sex = queryset.values("sex").annotate(**counts).order_by("sex")
    by_band = (
        queryset.annotate(band=Floor(F("age") / AGE_BAND_YEARS)).values("band").annotate(**counts).order_by("band")
    )
    stats = _survival(queryset.aggregate(**counts))
    stats["byClass"] = [{"passengerClass": row["passenger_class"], **_survival(row)} for row in by_class]
    stats["bySex"] = [{"sex": row["sex"], **_survival(row)} for row in by_sex]
    stats["byAgeBand"] = []
    for row in by_band:
        start = int(row["band"]) * AGE_BAND_YEARS
        stats["byAgeBand"].append(
            {
                "ageBand": f"{start}-{start + AGE_BAND_YEARS - 1}",
                "ageFrom": start,
                "ageTo": start + AGE_BAND_YEARS,
                **_survival(row),
            }
        )
    return stats


def person_rows(*, queryset):
    """The contract's fields of every passenger in the queryset, as PersonRows (no model instances)."""
    return queryset.values_list(*PERSON_FIELDS, named=True)
