"""The example passenger of the /people contract as a request body: the first row of the dataset,
Mr. Owen Harris Braund. Plain data, so the contract suite, the benchmark and the load test import
it without Django."""

from typing import Any


def person_body(**changes: Any) -> dict[str, Any]:
    """The example's PersonData, with `changes` (field names as in the API) applied."""
    return {
        "survived": True,
        "passengerClass": 3,
        "name": "Mr. Owen Harris Braund",
        "sex": "male",
        "age": 22,
        "siblingsOrSpousesAboard": 1,
        "parentsOrChildrenAboard": 0,
        "fare": 7.25,
        **changes,
    }
