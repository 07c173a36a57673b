import logging
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from passengers.csv_import import InvalidCSV, load_passengers_csv

logger = logging.getLogger("passengers.loadcsv")


class Command(BaseCommand):
    help = "Load passengers from a CSV file: all rows or none (every bad row is reported)."

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", default=settings.BASE_DIR / "fixtures" / "titanic.csv")
        parser.add_argument("--dry-run", action="store_true", help="validate and count, then roll back")
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="replace passengers already loaded with the file's values (edits made since are lost)",
        )

    def handle(self, *args, path, dry_run, overwrite, **options):
        bar = tqdm(unit=" rows", disable=not self.stdout.isatty(), file=sys.stderr)
        try:
            result = load_passengers_csv(path=path, overwrite=overwrite, dry_run=dry_run, progress=bar.update)
        except FileNotFoundError:
            raise CommandError(f"{path}: no such file") from None
        except OSError as error:  # a directory, no permission, ...
            raise CommandError(f"{path}: cannot read: {error.strerror or error}") from None
        except InvalidCSV as invalid:
            for row_error in invalid.errors:
                self.stderr.write(f"{path}: {row_error}")
            if invalid.total_errors > len(invalid.errors):
                self.stderr.write(f"... and {invalid.total_errors - len(invalid.errors)} more")
            raise CommandError(f"{path}: {invalid.total_errors} error(s); nothing was loaded") from None
        finally:
            bar.close()
        summary = (
            f"{'Dry run: would load' if dry_run else 'Loaded'} {path}: {result.rows} rows, "
            f"{result.created} created, {result.updated} updated, {result.unchanged} unchanged"
        )
        logger.info(
            summary,
            extra={
                "rows": result.rows,
                "rows_created": result.created,
                "rows_updated": result.updated,
                "rows_unchanged": result.unchanged,
                "dry_run": dry_run,
            },
        )
        self.stdout.write(summary)
