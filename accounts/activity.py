"""The activity log's vocabulary.

Each app declares the actions it writes as a TextChoices of its own, marked
with @vocabulary (in its `activity` module, which its AppConfig.ready
imports). The log's action column is plain text, so adding an action needs
no migration, in that app or here.
"""

from django.core.exceptions import ImproperlyConfigured
from django.db import models

_labels = {}


def vocabulary(actions):
    """Register an app's actions: their values are what the log stores, their labels what pages show."""
    for action in actions:
        if _labels.setdefault(action.value, action.label) != action.label:
            raise ImproperlyConfigured(f"The activity action {action.value!r} is declared twice.")
    return actions


def label(value):
    """What a page calls a stored action (one no app declares any more shows as it was stored)."""
    return _labels.get(value, value)


def choices():
    """Every declared action, by label: for filters."""
    return sorted(_labels.items(), key=lambda choice: choice[1])


@vocabulary
class Action(models.TextChoices):
    """What happens to accounts."""

    LOGIN = "login", "Logged in"
    LOGIN_FAILED = "login_failed", "Failed login"
    LOGIN_THROTTLED = "login_throttled", "Login throttled"
    LOGOUT = "logout", "Logged out"
    SIGNUP = "signup", "Signed up"
    SIGNUP_FAILED = "signup_failed", "Failed sign-up"
    CODE_GENERATED = "code_generated", "Registration code generated"
    CODE_REVOKED = "code_revoked", "Registration code revoked"
    PASSWORD_CHANGED = "password_changed", "Password changed"
    PASSWORD_RESET_SENT = "password_reset_sent", "Password reset link sent"
    PASSWORD_RESET = "password_reset", "Password reset by email"
    USER_CREATED = "user_created", "User created"
    USER_UPDATED = "user_updated", "User updated"
    USER_PASSWORD_SET = "user_password_set", "User password set"
    USER_DELETED = "user_deleted", "User deleted"
    SSH_KEY_ADDED = "ssh_key_added", "SSH key added"
    SSH_KEY_REMOVED = "ssh_key_removed", "SSH key removed"
