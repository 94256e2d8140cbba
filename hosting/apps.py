from django.apps import AppConfig


class HostingConfig(AppConfig):
    name = "hosting"

    def ready(self):
        from accounts import services as account_services

        from .services import user_live_servers_check

        account_services.user_delete_checks.append(user_live_servers_check)
