"""Idempotent retries of writes: the `Idempotency-Key` request header (IETF draft
draft-ietf-httpapi-idempotency-key-header), kept in the same database transaction as the write.

models: the stored keys and answers · views: the viewset hook (IdempotentWritesMixin) and its
OpenAPI description · management/commands/clearidempotencykeys: deletes expired keys.

Own code rather than a library: django-idempotency-key 1.3.0 keeps answers in the cache after the
view; djangorestframework-idempotency-key 1.0.3, drf-idempotency 1.0.0 and drf-idempotencykey 0.2.0
commit an "in progress" row before the view and the answer after it, each in a transaction of its
own, so a crash between the write and the answer leaves a write without its answer (or a key
without its write). Parsing the header is left to http-sf (RFC 8941/9651).
"""
