from django.urls import path

from . import views

app_name = "hosting"

urlpatterns = [
    path("servers/", views.server_list, name="server_list"),
    path("servers/new/", views.server_create, name="server_create"),
    path("servers/live/", views.server_list_live, name="server_list_live"),
    path("servers/<int:server_id>/", views.server_detail, name="server_detail"),
    path("servers/<int:server_id>/live/", views.server_live, name="server_live"),
    path("servers/<int:server_id>/start/", views.server_start, name="server_start"),
    path("servers/<int:server_id>/stop/", views.server_stop, name="server_stop"),
    path("servers/<int:server_id>/restart/", views.server_restart, name="server_restart"),
    path("servers/<int:server_id>/rename/", views.server_rename, name="server_rename"),
    path("servers/<int:server_id>/delete/", views.server_delete, name="server_delete"),
    path("servers/<int:server_id>/limits/", views.server_limits, name="server_limits"),
    path("admin/servers/", views.admin_server_list, name="admin_server_list"),
    path("admin/host/", views.admin_host, name="admin_host"),
    path("admin/host/monitor/", views.admin_monitor_status, name="admin_monitor_status"),
]
