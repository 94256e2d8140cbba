import idna
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from . import activity

EMAIL_TAKEN = "A user with this email already exists."
SSH_KEY_TAKEN = "This key already belongs to an account."


def normalize_email(email):
    """The one canonical form of an email: trimmed, lowercased, its domain in
    ASCII (punycode), so zed@bücher.example and zed@xn--bcher-kva.example are one."""
    email = (email or "").strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or domain.isascii():
        return email
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except (idna.IDNAError, UnicodeError):
        return email  # not a domain: the email validator says so


class UserManager(BaseUserManager):
    def get_by_natural_key(self, email):
        return self.get(email=normalize_email(email))

    def named(self, pk):
        """A user as the activity log names them, or None: never their password hash (a node's
        worker, which logs what it did to its servers, may not read one)."""
        return None if pk is None else self.only("email").filter(pk=pk).first()

    def create_user(self, email, password=None, **fields):
        user = self.model(email=normalize_email(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user


class User(AbstractBaseUser):
    email = models.EmailField(max_length=254, unique=True)
    is_admin = models.BooleanField("admin", default=False)
    is_active = models.BooleanField("enabled", default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(null=True, blank=True)
    # How many live virtual servers this user may have; empty means the default.
    server_quota = models.PositiveIntegerField(null=True, blank=True)
    # The most disk all their servers may have together, in MB; empty means the default.
    disk_quota_mb = models.PositiveIntegerField(null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="%(app_label)s_%(class)s_unique_email_ci",
                violation_error_message=EMAIL_TAKEN,
            ),
        ]

    def __str__(self):
        return self.email

    def set_legacy_bcrypt_hash(self, raw_hash):
        """Keep a hash from the legacy platform (`$2b$12$...`) as it is.

        Django's bcrypt hasher reads it behind its own prefix, and the next
        successful login re-hashes it with the first configured hasher.
        """
        if not raw_hash.startswith(("$2a$", "$2b$", "$2y$")):
            raise ValueError("not a bcrypt hash")
        self.password = f"bcrypt${raw_hash}"


class RegistrationCode(models.Model):
    """An invitation an admin shows to people: one active code per admin."""

    ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no I, O, 0, 1
    LENGTH = 8

    code = models.CharField(max_length=LENGTH, unique=True)
    created_by = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="registration_code"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    max_uses = models.PositiveIntegerField(null=True, blank=True)
    use_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.code

    @property
    def is_expired(self):
        return self.expires_at <= timezone.now()

    @property
    def uses_left(self):
        return None if self.max_uses is None else max(self.max_uses - self.use_count, 0)


class ActivityLog(models.Model):
    # The FK is nulled when the user is deleted; the copied email survives.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="activity"
    )
    email = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=32)  # an app's activity.Action (see accounts.activity)
    message = models.TextField()
    target = models.CharField(max_length=255, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Visitors' repeated failures are one row per client network and window, counted here.
    count = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="accounts_activity_user_idx"),
            models.Index(fields=["action", "-created_at"], name="accounts_activity_action_idx"),
        ]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.email}: {self.message}"

    @property
    def action_label(self):
        return activity.label(self.action)


class UserSession(models.Model):
    """Which stored sessions belong to whom, so they can be ended server-side."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sessions")
    session_key = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.user} {self.session_key[:6]}…"


class ThrottleCount(models.Model):
    """Attempts counted against one key (a hash of what is counted) until `expires_at`."""

    key = models.CharField(max_length=64, primary_key=True)
    count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.key[:12]}…: {self.count}"


class SshKey(models.Model):
    """A public key its user logs in to the SSH gateway with: keys only, never passwords."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(max_length=100)
    public_key = models.TextField()  # one OpenSSH line: type, key, and the name as its comment
    kind = models.CharField(max_length=64)  # ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa, ...
    bits = models.PositiveIntegerField()
    fingerprint = models.CharField(max_length=100)  # SHA256:...
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["fingerprint"], name="%(app_label)s_%(class)s_unique_fingerprint",
                                    violation_error_message=SSH_KEY_TAKEN),
        ]

    def __str__(self):
        return f"{self.name} ({self.fingerprint})"
