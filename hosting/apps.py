from django.apps import AppConfig


class HostingConfig(AppConfig):
    name = "hosting"

    def ready(self):
        from accounts.signals import user_delete_check

        from . import activity  # noqa: F401  (its activity vocabulary)
        from .services.servers import user_live_servers_check

        user_delete_check.connect(user_live_servers_check, dispatch_uid="hosting.user_live_servers")
