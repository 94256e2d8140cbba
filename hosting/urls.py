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
    path("servers/<int:server_id>/domains/add/", views.domain_add, name="domain_add"),
    path("domains/check/", views.domain_check, name="domain_check"),
    path("domains/<int:domain_id>/edit/", views.domain_edit, name="domain_edit"),
    path("domains/<int:domain_id>/remove/", views.domain_remove, name="domain_remove"),
    path("domains/<int:domain_id>/check/", views.domain_check_claim, name="domain_check_claim"),
    path("admin/domains/", views.admin_domain_list, name="admin_domain_list"),
    path("admin/domains/<int:domain_id>/approve/", views.domain_approve, name="domain_approve"),
    path("admin/", views.admin_dashboard, name="admin_dashboard"),
    path("admin/live/", views.admin_dashboard_live, name="admin_dashboard_live"),
    path("admin/servers/", views.admin_server_list, name="admin_server_list"),
    path("admin/host/", views.admin_host, name="admin_host"),
    path("admin/host/monitor/", views.admin_monitor_status, name="admin_monitor_status"),
    path("admin/terminals/", views.admin_terminals, name="admin_terminals"),
    path("admin/terminals/<int:terminal_id>/watch/", views.terminal_watch, name="terminal_watch"),
    path("admin/terminals/<int:terminal_id>/end/", views.terminal_end, name="terminal_end"),
]
