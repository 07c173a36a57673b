"""`python -m loadtest` (make loadtest): the Locust scenario, headless, against --url or a local server.

Every option can also be given as an environment variable LOADTEST_<OPTION> (LOADTEST_USERS=20),
which is how `make loadtest LOADTEST_USERS=20` passes it; the token is only read from LOADTEST_TOKEN.
Exit code: 0 when every threshold is met, 1 when one is missed, 2 when the run could not start.
"""

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from loadtest import MIX, PROFILES, format_mix, parse_mix
from loadtest.thresholds import SETS
from tests.harness import REPO
from tests.harness.gunicorn import Gunicorn
from tests.harness.postgres import create_token, dataset_database

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
PERMISSIONS = ("add_passenger", "change_passenger", "delete_passenger")


def from_env(name: str) -> str | None:
    return os.environ.get(f"LOADTEST_{name}") or None


def parser() -> argparse.ArgumentParser:
    profiles = "; ".join(f"{name}: {profile.description}" for name, profile in PROFILES.items())
    cli = argparse.ArgumentParser(prog="python -m loadtest", description=(__doc__ or "").split("\n\n")[0])
    cli.add_argument("--url", default=from_env("URL"), help="base URL (default: start the app here first)")
    cli.add_argument("--host-header", default=from_env("HOST"), help="Host header (a route by name through an IP)")
    cli.add_argument("--profile", default=from_env("PROFILE") or "standard", choices=PROFILES, help=profiles)
    cli.add_argument("--users", type=int, default=from_env("USERS"), help="readers (default: the profile's)")
    cli.add_argument("--seconds", type=int, default=from_env("SECONDS"), help="duration (default: the profile's)")
    cli.add_argument("--rate", type=float, default=from_env("RATE"), help="requests/s of each reader, 0: no pause")
    cli.add_argument("--writes-per-minute", type=float, default=from_env("WRITES_PER_MINUTE"))
    cli.add_argument("--mix", default=from_env("MIX"), help="reader task weights, e.g. detail=6,list=2,stats=1")
    cli.add_argument(
        "--thresholds",
        default=from_env("THRESHOLDS"),
        choices=sorted(SETS),
        help="default: the profile's, else deployment with --url and local without",
    )
    cli.add_argument("--report", default=from_env("REPORT"), help="also write the verdict here as Markdown")
    return cli


@contextlib.contextmanager
def local_server() -> Iterator[tuple[str, str]]:
    """The app under gunicorn (the production config) on a fresh database with the dataset, and a
    token with the write permissions; both gone afterwards. Plain HTTP on loopback."""
    database = f"titanic_loadtest_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="titanic-loadtest-") as tmp, dataset_database(database) as url:
        token = create_token(url, "loadtest", *PERMISSIONS)
        # One client address for every simulated user: the per-client throttles (120 a minute) would
        # measure themselves, not the service.
        unthrottled = {"TITANIC_READ_THROTTLE_RATE": "100000000/min", "TITANIC_WRITE_THROTTLE_RATE": "100000000/min"}
        with Gunicorn(Path(tmp), database_url=url, env={"DJANGO_SECURE_SSL_REDIRECT": "0", **unthrottled}) as server:
            config = server.config()
            print(
                f"loadtest: the app under gunicorn ({config['workers']} workers, {config['threads']} thread(s) "
                f"each) on {server.url}, database {database} (887 passengers), a token user with write permissions",
                flush=True,
            )
            yield server.url, token


def locust(url: str, token: str, args: argparse.Namespace) -> int:
    """Run the scenario headless; Locust's exit code (the verdict)."""
    profile = PROFILES[args.profile]
    users = args.users if args.users is not None else profile.users
    classes = ["Reader", "Writer"] if token else ["Reader"]
    command = [
        sys.executable,
        "-m",
        "locust",
        "--locustfile",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--host",
        url.rstrip("/"),
        "--users",
        str(users + (len(classes) - 1)),
        "--spawn-rate",
        str(users + 1),
        "--run-time",
        f"{args.seconds if args.seconds is not None else profile.seconds}s",
        "--stop-timeout",
        "15",
        "--rate",
        str(args.rate if args.rate is not None else profile.rate),
        "--writes-per-minute",
        str(args.writes_per_minute if args.writes_per_minute is not None else profile.writes_per_minute),
        "--mix",
        args.mix,
        "--thresholds",
        args.thresholds or profile.thresholds or ("deployment" if args.url else "local"),
        *(["--host-header", args.host_header] if args.host_header else []),
        *(["--report", str(Path(args.report).resolve())] if args.report else []),
        *classes,
    ]
    env = {**os.environ, "LOADTEST_TOKEN": token, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            continue  # Locust has the interrupt too: it stops the users, judges what ran and exits


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    try:
        args.mix = format_mix(parse_mix(args.mix) if args.mix else MIX)
    except ValueError as error:
        cli.error(str(error))
    token = os.environ.get("LOADTEST_TOKEN", "")
    if args.url:
        return locust(args.url, token, args)
    with local_server() as (url, local_token):
        return locust(url, token or local_token, args)


if __name__ == "__main__":
    sys.exit(main())
