from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        from . import activity, receivers  # noqa: F401  (its activity vocabulary; login/logout logging)
