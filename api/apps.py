from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"

    def ready(self):
        from . import activity, schema  # noqa: F401  (its activity vocabulary; the token in the OpenAPI schema)
