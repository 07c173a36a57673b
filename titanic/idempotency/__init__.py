"""Idempotent retries of writes: the `Idempotency-Key` request header (IETF draft
draft-ietf-httpapi-idempotency-key-header), kept in the same database transaction as the write.

models: the stored keys and answers · views: the viewset hook (IdempotentWritesMixin) and its
OpenAPI description · management/commands/clearidempotencykeys: deletes expired keys.
"""
