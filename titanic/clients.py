from django.conf import settings


def client_ip(request):
    """The client's address, for the login lockout.

    With TITANIC_TRUSTED_PROXIES = n proxies in front (each appends the peer it saw to
    X-Forwarded-For), the client is the n-th entry from the right: what the outermost trusted
    proxy saw. Entries further left come from the client and can be forged. Without trusted
    proxies, or a header too short to have passed through them, it is the TCP peer.
    """
    proxies = settings.TITANIC_TRUSTED_PROXIES
    forwarded = [entry.strip() for entry in request.headers.get("x-forwarded-for", "").split(",")]
    if proxies and len(forwarded) >= proxies and forwarded[-proxies]:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")
