"""The viewset hook: a write that carries an `Idempotency-Key` is done at most once per client and key.

Follows draft-ietf-httpapi-idempotency-key-header: the header is an RFC 8941 sf-string; the first
request with a key is processed normally; a retry with the same key and the same request (method,
path, body, client) gets the stored answer, marked `Idempotent-Replayed: true` (the payment APIs'
header); the same key with another request is a 422; a retry while the first is still in flight is a
409 with `Retry-After`. The key and the answer are written in the same transaction as the write.
"""

import functools
import hashlib
from typing import NoReturn

import http_sf
from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter
from rest_framework import mixins
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.generics import GenericAPIView

from titanic.idempotency.models import KEY_MAX_LENGTH, LIFETIME, IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
RETRY_AFTER_SECONDS = 1
EXAMPLE_KEY = '"8e03978e-40d5-43e8-bc93-6894a57f9324"'
LIFETIME_HOURS = int(LIFETIME.total_seconds() // 3600)


class KeyInFlight(APIException):
    status_code = 409
    default_detail = "A request with this Idempotency-Key is still being processed; retry it in a moment."
    default_code = "idempotency_key_in_flight"
    wait = RETRY_AFTER_SECONDS  # DRF's exception handler sends it as Retry-After


class KeyReused(APIException):
    status_code = 422
    default_detail = (
        "This Idempotency-Key was used with a different request (method, path or body); a new request needs a new key."
    )
    default_code = "idempotency_key_reused"


class IdempotentWritesMixin(mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin, GenericAPIView):
    """POST (create), PUT and PATCH (DRF's partial_update goes through update) and DELETE (destroy)
    honour the Idempotency-Key header; without it they are untouched. List it first among the bases."""

    def initial(self, request, *args, **kwargs):
        if HEADER in request.headers:
            # The fingerprint needs the raw body: read it before session authentication's CSRF check
            # can parse a form straight from the stream.
            request.body  # noqa: B018
        super().initial(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        return respond_once(self, request, functools.partial(super().create, request, *args, **kwargs))

    def update(self, request, *args, **kwargs):
        return respond_once(self, request, functools.partial(super().update, request, *args, **kwargs))

    def destroy(self, request, *args, **kwargs):
        return respond_once(self, request, functools.partial(super().destroy, request, *args, **kwargs))


def respond_once(view, request, handle):
    """handle() (the write and its Response), or the answer stored for this client's key."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return handle()
    key = parse_key(raw)
    client = f"user:{request.user.pk}" if request.user.is_authenticated else "anonymous"
    fingerprint = _fingerprint(request, client)
    with transaction.atomic():
        if not _claim(client, key):
            raise KeyInFlight
        stored = IdempotencyKey.objects.filter(client=client, key=key).first()
        if stored is not None and not stored.expired:
            if stored.fingerprint != fingerprint:
                raise KeyReused
            return _replay(stored)
        response = handle()  # an exception (400, 404, a database error) rolls back everything
        view.finalize_response(request, response)  # the renderer content negotiation chose
        response.render()
        if stored is not None:
            stored.delete()  # expired: the key starts afresh
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(
                    client=client,
                    key=key,
                    fingerprint=fingerprint,
                    status=response.status_code,
                    content_type=response.get("Content-Type", ""),
                    body=response.content,
                )
        except IntegrityError:
            raise KeyInFlight from None  # another request with the key committed first: undo this write
        return response


def parse_key(raw):
    """The key an `Idempotency-Key` field value carries (an sf-string, parameters ignored), or a 400."""
    if not raw.strip():
        _bad("must not be empty.")
    if not raw.isascii():
        _bad("must be ASCII.")
    try:
        item = http_sf.parse(raw.encode(), tltype="item")
    except ValueError:
        item = None
    value = item[0] if isinstance(item, tuple) else None  # (value, parameters): parameters are ignored
    if not isinstance(value, str):  # a token, number, byte sequence... is not a String
        _bad(f"must be a quoted string (an RFC 8941 sf-string), e.g. {HEADER}: {EXAMPLE_KEY}.")
    if not value:
        _bad("must not be empty.")
    if len(value) > KEY_MAX_LENGTH:
        _bad(f"must be at most {KEY_MAX_LENGTH} characters long, quotes not counted.")
    return value


def _bad(problem) -> NoReturn:
    raise ValidationError({HEADER: [f"{HEADER} {problem}"]})


def _fingerprint(request, client):
    """What makes a retry the same request: method, path (with or without its trailing slash), client, body."""
    digest = hashlib.sha256("\0".join([request.method, request.path.rstrip("/"), client, ""]).encode())
    digest.update(request.body)
    return digest.hexdigest()


def _claim(client, key):
    """Take this client's key for the rest of the transaction, without waiting: False while another
    transaction holds it (PostgreSQL advisory lock). Other databases: True, and the unique constraint
    on (client, key) turns the loser of a race into a 409 when it stores its answer."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_id(client, key)])
        return cursor.fetchone()[0]


def lock_id(client, key):
    """The advisory lock of a client's key: 64 bits of its hash."""
    return int.from_bytes(hashlib.sha256(f"{client}\0{key}".encode()).digest()[:8], "big", signed=True)


def _replay(stored):
    response = HttpResponse(bytes(stored.body), status=stored.status)
    if stored.content_type:
        response["Content-Type"] = stored.content_type
    else:
        del response["Content-Type"]  # a 204 has none
    response[REPLAYED_HEADER] = "true"
    return response


IDEMPOTENCY_KEY_PARAMETERS = [
    OpenApiParameter(
        HEADER,
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description=f"Optional; makes a retry safe. A key of your choice (a UUID, say) as an RFC 8941 string: "
        f"in double quotes, printable ASCII, 1 to {KEY_MAX_LENGTH} characters. A retry with the same key and "
        f"the same request (method, path, body) within {LIFETIME_HOURS} hours gets the first answer again, "
        f"marked `{REPLAYED_HEADER}: true`, and writes nothing; the same key with another request is a 422, "
        f"and a retry while the first is still being processed a 409 (see Retry-After). "
        f"Keys belong to the client (the user; anonymous writers share one space).",
        examples=[OpenApiExample("a UUID", value=EXAMPLE_KEY)],
    ),
    OpenApiParameter(
        REPLAYED_HEADER,
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        enum=["true"],
        description=f"Present when this is the stored answer to an earlier request with the same {HEADER}.",
        response=[200, 201, 204],
    ),
]
