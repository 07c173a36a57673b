"""A load test of the API with Locust, against any deployment or a local gunicorn, judged by thresholds.

    make loadtest URL=https://dev.example.com [TOKEN=<DRF token>] [LOADTEST_SECONDS=N] [LOADTEST_USERS=N]
    make loadtest                 # no URL: the app under gunicorn + PostgreSQL here, with its own token
    .venv/bin/python -m loadtest --help

The users behave like the API's clients: readers (the list, single passengers, filtered and
paginated lists, the statistics, conditional GETs of what they read before) at a steady pace each,
and, with a token, one writer that creates, updates and deletes passengers of its own. The run
exits non-zero when a threshold is missed and prints the checks as a table; --report writes it as
Markdown.

- __main__: the command line, the profiles, the local server, the Locust process;
- locustfile: the users and, when Locust quits, the verdict;
- thresholds: the threshold sets and the tables.
"""

import dataclasses

# What a reader does, by weight: mostly single passengers, then conditional GETs of what it read
# before (a client with a cache), filtered and paginated lists, the whole list, the statistics.
MIX = {"detail": 6, "conditional": 5, "filter": 3, "page": 3, "list": 2, "stats": 1}


@dataclasses.dataclass(frozen=True)
class Profile:
    """A load shape: readers, each at `rate` requests/s (0: no pause), and writes per minute."""

    users: int
    rate: float
    seconds: int
    writes_per_minute: float
    thresholds: str | None = None  # None: local for the local server, deployment for a URL
    description: str = ""


PROFILES = {
    "standard": Profile(10, 2, 60, 20, description="10 readers at 2 req/s, 20 writes/min, 60 s"),
    "gentle": Profile(4, 1, 60, 6, description="after a deploy: 4 readers at 1 req/s, 6 writes/min, 60 s"),
    "scale-out": Profile(
        40,
        0,
        240,
        20,
        thresholds="scale-out",
        description="40 readers without pause for 4 minutes: enough CPU for the autoscaler to add pods",
    ),
}

# Each write round trip is a POST, a PUT and a DELETE (the throttle counts all three).
REQUESTS_PER_WRITE = 3


def parse_mix(text: str) -> dict[str, int]:
    """`detail=6,list=2,...`: weights of the reader's tasks (names of MIX; those left out are 0)."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in MIX:
            raise ValueError(f"unknown task {name!r} in the mix (known: {', '.join(MIX)})")
        if not value.isdigit():
            raise ValueError(f"the weight of {name!r} must be a whole number ≥ 0, not {value!r}")
        weights[name] = int(value)
    if not any(weights.values()):
        raise ValueError("the mix gives no task a weight")
    return weights


def format_mix(weights: dict[str, int]) -> str:
    return ",".join(f"{name}={weight}" for name, weight in weights.items())
