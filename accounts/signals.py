"""Signals accounts sends for other apps to answer."""

from django.dispatch import Signal

# Sent with `user` before an account is deleted. Each receiver returns why
# the user cannot be deleted yet (a sentence), or None.
user_delete_check = Signal()
