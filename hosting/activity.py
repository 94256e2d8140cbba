"""What hosting writes to the activity log (see accounts.activity)."""

from django.db import models

from accounts.activity import vocabulary


@vocabulary
class Action(models.TextChoices):
    SERVER_CREATED = "server_created", "Server created"
    SERVER_STARTED = "server_started", "Server started"
    SERVER_STOPPED = "server_stopped", "Server stopped"
    SERVER_RESTARTED = "server_restarted", "Server restarted"
    SERVER_RENAMED = "server_renamed", "Server renamed"
    SERVER_LIMITS_CHANGED = "server_limits", "Server limits changed"
    SERVER_DELETED = "server_deleted", "Server deleted"
    SERVER_MOVING = "server_moving", "Server move asked for"
    SERVER_MOVED = "server_moved", "Server moved to another node"
    SERVER_FAILED = "server_failed", "Server operation failed"
    DOMAIN_ADDED = "domain_added", "Domain added"
    DOMAIN_UPDATED = "domain_updated", "Domain changed"
    DOMAIN_REMOVED = "domain_removed", "Domain removed"
    DOMAIN_APPROVED = "domain_approved", "Domain approved"
    DOMAIN_VERIFIED = "domain_verified", "Domain proved by DNS"
    TERMINAL_OPENED = "terminal_opened", "Terminal opened"
    TERMINAL_CLOSED = "terminal_closed", "Terminal closed"
    TERMINAL_WATCHED = "terminal_watched", "Terminal watched"
    TERMINAL_ENDED = "terminal_ended", "Terminal ended by an administrator"
    CONTAINER_ACTION = "container_action", "Container action"
    APP_CREATED = "app_created", "App created"
    APP_DEPLOYED = "app_deployed", "App deployed"
    APP_STARTED = "app_started", "App started"
    APP_STOPPED = "app_stopped", "App stopped"
    APP_REMOVED = "app_removed", "App removed"
    APP_FAILED = "app_failed", "App deploy failed"
    SSH_LOGIN = "ssh_login", "SSH login"
    SSH_LOGIN_FAILED = "ssh_login_failed", "Failed SSH login"
    SSH_SESSION = "ssh_session", "SSH session"
    LEGACY = "legacy", "From the old platform"
    NODE_ADDED = "node_added", "Node added"
    NODE_CHANGED = "node_changed", "Node changed"
    NODE_JOINED = "node_joined", "Node joined"
    NODE_REMOVED = "node_removed", "Node removed"
