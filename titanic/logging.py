"""Logging shared by Django and gunicorn: JSON lines (containers) or readable text (local)."""

import contextvars
import logging
import re

from titanic.text import UNPRINTABLE

request_id_var = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request being served (or "-")."""

    def filter(self, record):
        record.request_id = request_id_var.get()
        return True


class TextFormatter(logging.Formatter):
    """One record, one line: the message (which may quote a client: a username, a path) has its
    unprintable characters escaped (a newline becomes \\n); a traceback keeps its lines."""

    def formatMessage(self, record):
        record.message = _UNPRINTABLE.sub(_escape, record.message)
        return super().formatMessage(record)


_UNPRINTABLE = re.compile(UNPRINTABLE)


def _escape(match):
    return match.group().encode("unicode_escape").decode("ascii")


def logging_config(log_format="text", level="INFO"):
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.orjson.OrjsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                "timestamp": False,
            },
            "text": {
                "()": TextFormatter,
                "fmt": "%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s",
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": log_format,
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Our request log replaces these per-request lines (django.request keeps 5xx tracebacks).
            "django.request": {"level": "ERROR"},
            "django.server": {"level": "ERROR"},
            "gunicorn.access": {"level": "ERROR"},
            "gunicorn.error": {"handlers": ["console"], "level": level, "propagate": False},
        },
    }
