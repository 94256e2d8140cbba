"""The request side's work, one module per topic. Views (and the API) call one
service per change: it runs in a transaction, writes the activity log and
leaves Docker, Caddy and DNS work to the worker after the commit, except the
Caddy change a domain needs, which is applied in the same transaction.

What callers use is importable from here."""

from .domains import (
    DOMAIN_CHECKS_PER_WINDOW,
    check_name,
    domain_add,
    domain_approve,
    domain_check_request,
    domain_remove,
    domain_update,
)
from .nodes import node_add, node_for_token, node_join, node_joined, node_new_token, node_remove, node_update
from .servers import (
    disk_quota_for,
    isolation_summary,
    orphan_containers,
    quota_for,
    quota_left,
    server_create,
    server_delete,
    server_move,
    server_rename,
    server_restart,
    server_set_limits,
    server_start,
    server_stop,
    server_watched,
)
from .sessions import own_sessions, terminal_end, terminals_open
from .workloads import (
    COMPOSE_MAX_BYTES,
    app_create,
    app_deploy,
    app_latest_file,
    app_remove,
    app_start,
    app_stop,
    compose_file_check,
    container_act,
    image_remove,
    images_refresh_now,
    images_watched,
)
