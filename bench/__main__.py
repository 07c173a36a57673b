import argparse
import datetime
from pathlib import Path

import bench
from bench.run import run
from tests.harness import REPO


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(bench.__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds per endpoint; loadcsv at 887 and 20,000 rows")
    parser.add_argument("--output", type=Path, help="results file (default bench-results/bench-<timestamp>.json)")
    parser.add_argument("--workers", type=int, help="GUNICORN_WORKERS for both servers (default: the config's)")
    parser.add_argument("--threads", type=int, help="GUNICORN_THREADS for both servers (default: the config's)")
    args = parser.parse_args()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or REPO / "bench-results" / f"bench-{stamp}.json"
    run("smoke" if args.smoke else "full", output, args.workers, args.threads)


main()
