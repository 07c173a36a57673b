from django.apps import AppConfig


class TitanicConfig(AppConfig):
    """The project package as an app, so that its signal receivers are connected at start."""

    name = "titanic"

    def ready(self):
        from titanic import lockout  # noqa: F401  (the login receivers)
