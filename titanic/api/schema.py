def contract_paths(endpoints):
    """Document the contract's paths (/people, /people/{uuid}); the router also accepts a trailing slash."""
    return [
        (path.rstrip("/") if path.startswith("/people") else path, regex, method, callback)
        for path, regex, method, callback in endpoints
    ]
