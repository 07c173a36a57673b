"""The API's project-wide policy, which settings.REST_FRAMEWORK and SPECTACULAR_SETTINGS name:
errors (exception_handlers), who may write (permissions), how often (throttling), opt-in pages
(pagination) and the documented paths (schema)."""
