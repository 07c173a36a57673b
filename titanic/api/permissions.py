from django.conf import settings
from rest_framework.permissions import DjangoModelPermissionsOrAnonReadOnly


class ModelPermissionsOrAnonymousWrites(DjangoModelPermissionsOrAnonReadOnly):
    """Reads are public; writes need the add/change/delete passenger permission.

    TITANIC_ANONYMOUS_WRITES=1 opens writes to everyone, for legacy clients on a trusted network.
    """

    def has_permission(self, request, view):
        return settings.TITANIC_ANONYMOUS_WRITES or super().has_permission(request, view)
