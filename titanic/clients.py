import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The client's address, for the login lockout and the throttles; None if there is no usable one.

    With TITANIC_TRUSTED_PROXIES = n proxies in front (each appends the peer it saw to
    X-Forwarded-For), the client is the n-th entry from the right: what the outermost trusted
    proxy saw. Entries further left come from the client and can be forged. Without trusted
    proxies, a header too short to have passed through them, or an entry there that is not an IP
    address (the proxies append only addresses), it is the TCP peer.
    """
    proxies = settings.TITANIC_TRUSTED_PROXIES
    if proxies:
        forwarded = request.headers.get("x-forwarded-for", "").split(",")
        if len(forwarded) >= proxies and (address := _ip_address(forwarded[-proxies])):
            return address
    return _ip_address(request.META.get("REMOTE_ADDR", ""))


def _ip_address(text: str) -> str | None:
    """The address in its canonical form, or None for anything PostgreSQL's inet type would not take
    as one (a name, a port, an IPv6 zone): the lockout stores it in such a column."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return None if getattr(address, "scope_id", None) else str(address)
