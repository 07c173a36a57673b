from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from passengers.filters import PassengerFilter
from passengers.hot_queries import person_row
from passengers.models import Passenger
from passengers.selectors import person_rows, survival_stats
from passengers.serializers import PassengerSerializer, StatsSerializer, person
from titanic.api.pagination import OptInLimitOffsetPagination
from titanic.idempotency.views import IDEMPOTENCY_KEY_PARAMETERS, IdempotentWritesMixin

ERRORS = {
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid data: the body names each bad field"),
    401: OpenApiResponse(OpenApiTypes.OBJECT, description="No or invalid credentials"),
    403: OpenApiResponse(OpenApiTypes.OBJECT, description="Authenticated, but without the passenger permission"),
    404: OpenApiResponse(OpenApiTypes.OBJECT, description="No passenger with this uuid"),
    409: OpenApiResponse(
        OpenApiTypes.OBJECT, description="A request with this Idempotency-Key is still in flight; see Retry-After"
    ),
    413: OpenApiResponse(OpenApiTypes.OBJECT, description="Request body too large"),
    415: OpenApiResponse(OpenApiTypes.OBJECT, description="Unsupported media type"),
    422: OpenApiResponse(OpenApiTypes.OBJECT, description="This Idempotency-Key came with a different request"),
    429: OpenApiResponse(OpenApiTypes.OBJECT, description="Too many writes; see Retry-After"),
}


def _errors(*codes):
    return {code: ERRORS[code] for code in codes}


WRITE_ERRORS = (400, 401, 403, 409, 413, 415, 422, 429)
UUID_PARAMETER = OpenApiParameter("uuid", OpenApiTypes.UUID, OpenApiParameter.PATH)


@extend_schema_view(
    list=extend_schema(
        summary="List passengers",
        description="Every passenger, as a JSON array. With `?limit=` (and `offset=`) the response is a page "
        "object instead. Filters, `search` and `ordering` narrow and sort the list.",
        responses={200: PassengerSerializer(many=True), **_errors(400)},
    ),
    create=extend_schema(
        summary="Add a passenger",
        parameters=IDEMPOTENCY_KEY_PARAMETERS,
        responses={201: PassengerSerializer, **_errors(*WRITE_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="Get a passenger", parameters=[UUID_PARAMETER], responses={200: PassengerSerializer, **_errors(404)}
    ),
    update=extend_schema(
        summary="Replace a passenger's data",
        parameters=[UUID_PARAMETER, *IDEMPOTENCY_KEY_PARAMETERS],
        responses={200: PassengerSerializer, **_errors(*WRITE_ERRORS, 404)},
    ),
    partial_update=extend_schema(
        summary="Change some of a passenger's data",
        parameters=[UUID_PARAMETER, *IDEMPOTENCY_KEY_PARAMETERS],
        responses={200: PassengerSerializer, **_errors(*WRITE_ERRORS, 404)},
    ),
    destroy=extend_schema(
        summary="Delete a passenger",
        parameters=[UUID_PARAMETER, *IDEMPOTENCY_KEY_PARAMETERS],
        responses={204: None, **_errors(400, 401, 403, 404, 409, 422, 429)},
    ),
)
class PassengerViewSet(
    IdempotentWritesMixin,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Passenger.objects.order_by("name", "uuid")
    serializer_class = PassengerSerializer
    filterset_class = PassengerFilter
    pagination_class = OptInLimitOffsetPagination
    lookup_field = "uuid"

    def list(self, request, *args, **kwargs):
        rows = person_rows(queryset=self.filter_queryset(self.get_queryset()))
        page = self.paginate_queryset(rows)
        if page is not None:
            return self.get_paginated_response([person(row) for row in page])
        return Response([person(row) for row in rows])

    def retrieve(self, request, *args, **kwargs):
        """One indexed lookup of the contract's fields (the list's filters do not apply to one person)."""
        row = person_row(kwargs[self.lookup_field])
        if row is None:
            raise Http404("No Passenger matches the given query.")  # the words of the other 404s
        return Response(person(row))

    @extend_schema(
        summary="Survival statistics",
        description="Counts and survival rates overall, by class, by sex and by 10-year age band. "
        "Takes the same filters as the list.",
        responses={200: StatsSerializer, **_errors(400)},
    )
    @action(detail=False, pagination_class=None)
    def stats(self, request):
        return Response(survival_stats(queryset=self.filter_queryset(self.get_queryset()).order_by()))
