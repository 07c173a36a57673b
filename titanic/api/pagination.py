from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination


class OptInLimitOffsetPagination(LimitOffsetPagination):
    """Pages only when the client sends ?limit=; otherwise the whole list, as the contract says."""

    default_limit = None
    max_limit = 1000
    max_offset = 2**31 - 1

    def get_limit(self, request):
        return self._parameter(request, self.limit_query_param, minimum=1, maximum=self.max_limit)

    def get_offset(self, request):
        return self._parameter(request, self.offset_query_param, minimum=0, maximum=self.max_offset) or 0

    def get_paginated_response_schema(self, schema):
        """Without ?limit= the response is the contract's plain array; with it, a page object."""
        return {"oneOf": [schema, super().get_paginated_response_schema(schema)]}

    def _parameter(self, request, name, *, minimum, maximum):
        raw = request.query_params.get(name)
        if raw is None:
            return None
        if not raw.isascii() or not raw.isdigit() or not minimum <= int(raw) <= maximum:
            raise ValidationError({name: [f"Must be an integer from {minimum} to {maximum}."]})
        return int(raw)
