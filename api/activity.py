"""What the API writes to the activity log (see accounts.activity)."""

from django.db import models

from accounts.activity import vocabulary


@vocabulary
class Action(models.TextChoices):
    TOKEN_CREATED = "token_created", "API token created"
    TOKEN_REVOKED = "token_revoked", "API token revoked"
