"""Account work: every change to users, codes and the activity log goes through here."""

import ipaddress
import secrets
from datetime import timedelta
from importlib import import_module

import asyncssh
from django.conf import settings
from django.contrib.auth import update_session_auth_hash
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Q
from django.utils import timezone

from controlpanel.db import count_of
from controlpanel.errors import refusal

from . import activity, throttling
from .activity import Action
from .models import (
    EMAIL_TAKEN,
    SSH_KEY_TAKEN,
    ActivityLog,
    RegistrationCode,
    SshKey,
    User,
    UserSession,
    normalize_email,
)
from .signals import user_delete_check

ERRORS = {
    "invalid_code": "This registration code is not valid. Ask an administrator for a current one.",
    "email_taken": EMAIL_TAKEN,
    "last_admin": "This is the last enabled administrator; make someone else an administrator first.",
    "own_admin": "You cannot remove your own administrator rights.",
    "own_disable": "You cannot disable your own account.",
    "own_delete": "You cannot delete your own account.",
    "key_required": "Paste a public key: the one line of your id_ed25519.pub (or id_rsa.pub).",
    "key_private": "That is a private key: never share it. Paste the public one (the .pub file).",
    "key_invalid": "This is not an OpenSSH public key (ssh-ed25519 AAAA… or ssh-rsa AAAA…).",
    "key_kind": "{kind} keys are not accepted: use ed25519, ECDSA or RSA of 3072 bits or more.",
    "key_weak": "This RSA key has {bits} bits: use {least} or more, or an ed25519 key.",
    "too_many_keys": "An account can have at most {limit} SSH keys.",
    "key_taken": SSH_KEY_TAKEN,
}

# Activity log ----------------------------------------------------------------

def client_ip(request):
    """The client's address, trusting X-Forwarded-For only as far as our own proxies.

    Each of TRUSTED_PROXY_COUNT proxies appends the address it saw, so the
    client is the entry that many places from the end; anything to the left of
    it was written by the client and is ignored.
    """
    if request is None:
        return None
    return forwarded_client_ip(request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR", ""))


def forwarded_client_ip(remote_addr, forwarded_for):
    """client_ip() from the peer's address and the X-Forwarded-For header (for non-HTTP callers too)."""
    address = remote_addr
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [a.strip() for a in forwarded_for.split(",") if a.strip()]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _storable(text, limit=None):
    """Text as the database can keep it: PostgreSQL refuses NUL characters, which visitors may send."""
    text = str(text).replace("\x00", "\ufffd")
    return text[:limit] if limit else text


def activity_log(*, action, message, user=None, email="", target="", request=None, address=None):
    """A row of the activity log; the client is the request's, or `address` (the gateway's connections).
    A request made with an API token says which (api.authentication)."""
    if token := getattr(request, "api_token", None):
        message = f"{message} (API token “{token.name}”)"
    return ActivityLog.objects.create(
        user=user,
        email=_storable(email or (user.email if user else ""), 254),
        action=action,
        message=_storable(message),
        target=_storable(target, 255),
        ip=client_ip(request) if request is not None else address,
    )


def _typed(text):
    """What a visitor typed, as we keep it: printable, at most 100 characters."""
    return "".join(c if c.isprintable() else "\ufffd" for c in str(text))[:100]


@transaction.atomic
def visitor_activity(*, action, typed="", request=None, address=None):
    """What anonymous visitors cause (failed logins, refused sign-ups and SSH keys), in few
    rows: repeats from one client network within THROTTLE_WINDOW add to one row's
    count, which keeps only the last thing typed (bounded). The client is the
    request's, or `address` (SSH)."""
    address = client_ip(request) if request is not None else address
    client = throttling.client_key(address)
    typed = _typed(typed)
    label = activity.label(action)
    since = timezone.now() - timedelta(seconds=settings.THROTTLE_WINDOW)
    row = (ActivityLog.objects.select_for_update().filter(action=action, user=None, target=client, created_at__gte=since)
           .order_by("-created_at").first())
    if row is None:
        entry = activity_log(action=action, email=typed, target=client, message=f"{label} for “{typed}” from {client}")
        ActivityLog.objects.filter(pk=entry.pk).update(ip=address)
        return entry
    row.count += 1
    row.email, row.created_at, row.ip = _storable(typed), timezone.now(), address
    row.message = f"{label} ×{row.count} from {client}, the last for “{_storable(typed)}”"
    row.save(update_fields=["count", "email", "created_at", "ip", "message"])
    return row


def activity_purge():
    cutoff = timezone.now() - timedelta(days=settings.ACTIVITY_RETENTION_DAYS)
    deleted, _ = ActivityLog.objects.filter(created_at__lt=cutoff).delete()
    return deleted


# Registration codes ----------------------------------------------------------

def _new_code():
    return "".join(secrets.choice(RegistrationCode.ALPHABET) for _ in range(RegistrationCode.LENGTH))


def registration_code_generate(*, admin, max_uses=None, request=None):
    """Give the admin a fresh code, replacing the one they had."""
    expires_at = timezone.now() + settings.REGISTRATION_CODE_TTL
    for _ in range(5):  # a collision in 32^8 codes is a freak; retry a few times
        try:
            with transaction.atomic():
                code, _ = RegistrationCode.objects.update_or_create(
                    created_by=admin,
                    defaults={
                        "code": _new_code(),
                        "created_at": timezone.now(),
                        "expires_at": expires_at,
                        "max_uses": max_uses,
                        "use_count": 0,
                    },
                )
                limit = f", up to {max_uses} sign-ups" if max_uses else ""
                activity_log(
                    action=Action.CODE_GENERATED,
                    user=admin,
                    message=f"Generated registration code {code.code} (valid until {expires_at:%H:%M} UTC{limit})",
                    target=code.code,
                    request=request,
                )
                return code
        except IntegrityError:
            continue
    raise RuntimeError("could not generate a unique registration code")


@transaction.atomic
def registration_code_revoke(*, admin, request=None):
    code = RegistrationCode.objects.filter(created_by=admin).first()
    if code is None:
        return False
    code.delete()
    activity_log(
        action=Action.CODE_REVOKED,
        user=admin,
        message=f"Revoked registration code {code.code}",
        target=code.code,
        request=request,
    )
    return True


def registration_codes_purge():
    deleted, _ = RegistrationCode.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


def _unspent(codes):
    """Codes with time and uses left: columns of the code's own row only, so a
    conditional UPDATE re-checks them on the row it waited for."""
    return codes.filter(expires_at__gt=timezone.now()).filter(Q(max_uses__isnull=True) | Q(use_count__lt=F("max_uses")))


def _usable_codes():
    """Codes that sign people up: unspent, made by an enabled administrator."""
    return _unspent(RegistrationCode.objects.filter(created_by__is_active=True, created_by__is_admin=True))


def registration_code_find(code):
    """The usable code matching `code` (any case), or None."""
    return _usable_codes().filter(code=code.strip().upper()).select_related("created_by").first()


@transaction.atomic
def user_signup(*, code, email, password, request=None):
    """Create an account with a registration code.

    The code's use is counted with one conditional UPDATE, so concurrent
    sign-ups can never use a limited code more often than allowed.
    """
    registration = registration_code_find(code)
    if registration is None or not _unspent(RegistrationCode.objects.filter(pk=registration.pk)).update(use_count=F("use_count") + 1):
        raise refusal(ERRORS, "invalid_code", "code")
    user = _user_create(email=email, password=password)
    admin = registration.created_by
    activity_log(
        action=Action.SIGNUP,
        user=user,
        message=f"Signed up with registration code {registration.code} from {admin.email}",
        target=admin.email,
        request=request,
    )
    return user


# Users -----------------------------------------------------------------------

def _user_create(*, email, password, is_admin=False):
    email = normalize_email(email)
    if User.objects.filter(email=email).exists():
        raise refusal(ERRORS, "email_taken", "email")
    try:
        with transaction.atomic():
            return User.objects.create_user(email=email, password=password, is_admin=is_admin)
    except IntegrityError:  # lost a race with another sign-up for the same email
        raise refusal(ERRORS, "email_taken", "email") from None


@transaction.atomic
def user_create(*, actor, email, password, is_admin=False, request=None):
    user = _user_create(email=email, password=password, is_admin=is_admin)
    role = "admin" if is_admin else "user"
    activity_log(
        action=Action.USER_CREATED, user=actor, message=f"Created {role} {user.email}", target=user.email, request=request
    )
    return user


def users_with_counts(users):
    """`users` with how many live servers and SSH keys each has, counted for the rows a page shows."""
    servers = User.servers.rel.related_model.objects.live().filter(owner=OuterRef("pk"))  # hosting's, not imported here
    keys = SshKey.objects.filter(user=OuterRef("pk"))
    return users.annotate(server_count=count_of(servers, "owner"), key_count=count_of(keys, "user"))


def _enabled_admins():
    return User.objects.filter(is_admin=True, is_active=True)


def _ensure_admin_remains(*, user):
    """Refuse to take away the last enabled admin."""
    if user.is_admin and user.is_active and not _enabled_admins().exclude(pk=user.pk).exists():
        raise refusal(ERRORS, "last_admin")


@transaction.atomic
def user_update(*, actor, user, email, is_admin, is_active, server_quota=None, disk_quota_mb=None, request=None):
    user = User.objects.select_for_update().get(pk=user.pk)
    email = normalize_email(email)
    if user.pk == actor.pk and not is_admin:
        raise refusal(ERRORS, "own_admin", "is_admin")
    if user.pk == actor.pk and not is_active:
        raise refusal(ERRORS, "own_disable", "is_active")
    if (user.is_admin and not is_admin) or (user.is_active and not is_active):
        _ensure_admin_remains(user=user)
    if email != user.email and User.objects.filter(email=email).exclude(pk=user.pk).exists():
        raise refusal(ERRORS, "email_taken", "email")

    changes = []
    if email != user.email:
        changes.append(f"email {user.email} → {email}")
    if is_admin != user.is_admin:
        changes.append("made admin" if is_admin else "admin rights removed")
    if is_active != user.is_active:
        changes.append("enabled" if is_active else "disabled")
    if server_quota != user.server_quota:
        changes.append(f"server limit {'default' if server_quota is None else server_quota}")
    if disk_quota_mb != user.disk_quota_mb:
        changes.append(f"disk limit {'default' if disk_quota_mb is None else f'{disk_quota_mb} MB'}")
    if not changes:
        return user
    user.email, user.is_admin, user.is_active = email, is_admin, is_active
    user.server_quota, user.disk_quota_mb = server_quota, disk_quota_mb
    user.save(update_fields=["email", "is_admin", "is_active", "server_quota", "disk_quota_mb"])
    if not is_active:
        sessions_end(user=user)
    if not (is_admin and is_active) and RegistrationCode.objects.filter(created_by=user).delete()[0]:
        changes.append("their registration code revoked")
    activity_log(
        action=Action.USER_UPDATED,
        user=actor,
        message=f"Updated {user.email}: {', '.join(changes)}",
        target=user.email,
        request=request,
    )
    return user


@transaction.atomic
def user_set_password(*, actor, user, password, request=None):
    """An admin sets someone's password; that person's sessions end."""
    user.set_password(password)
    user.save(update_fields=["password"])
    sessions_end(user=user)
    activity_log(
        action=Action.USER_PASSWORD_SET,
        user=actor,
        message=f"Set a new password for {user.email}",
        target=user.email,
        request=request,
    )


@transaction.atomic
def password_change(*, request, user, password):
    """The user changes their own password: this session lives on, the others end."""
    user.set_password(password)
    user.save(update_fields=["password"])
    current = request.session.session_key
    sessions_end(user=user, keep=current)
    update_session_auth_hash(request, user)  # gives this session a new key
    user.sessions.filter(session_key=current).update(session_key=request.session.session_key)
    activity_log(action=Action.PASSWORD_CHANGED, user=user, message="Changed their password", request=request)


def password_reset_send(*, request, user, subject, body):
    """A reset link goes to `user` by email, from the worker: the reply takes as long
    whether an account has the address or not, and the mail server's delays are the worker's."""
    from . import tasks

    activity_log(action=Action.PASSWORD_RESET_SENT, user=user, message="Asked for a password reset link by email", request=request)
    transaction.on_commit(lambda: tasks.email_send.delay(subject, body, user.email))


def password_reset(*, request, user, password):
    """A password set from an emailed link: every session of the account ends."""
    user.set_password(password)
    user.save(update_fields=["password"])
    sessions_end(user=user)
    activity_log(action=Action.PASSWORD_RESET, user=user, message="Set a new password from an emailed link", request=request)


def user_delete_blockers(user):
    """Why `user` cannot be deleted yet, as other apps answer user_delete_check."""
    return [reason for _, reason in user_delete_check.send(sender=User, user=user) if reason]


@transaction.atomic
def user_delete(*, actor, user, request=None):
    if user.pk == actor.pk:
        raise refusal(ERRORS, "own_delete")
    _ensure_admin_remains(user=user)
    if blockers := user_delete_blockers(user):
        raise ValidationError(blockers)
    email = user.email
    sessions_end(user=user)
    user.delete()
    activity_log(action=Action.USER_DELETED, user=actor, message=f"Deleted user {email}", target=email, request=request)


# Sessions --------------------------------------------------------------------

def sessions_end(*, user, keep=None):
    """Delete every stored session of `user` (but `keep`), server-side.

    Sessions are tracked at login (see signals), so this does not scan the
    whole session table.
    """
    store = import_module(settings.SESSION_ENGINE).SessionStore
    keys = set(user.sessions.values_list("session_key", flat=True)) - {keep}
    for key in keys:
        store(session_key=key).delete()  # from the cache too, where the engine keeps one
    user.sessions.filter(session_key__in=keys).delete()


def session_track(*, request, user):
    UserSession.objects.get_or_create(session_key=request.session.session_key, defaults={"user": user})


def session_untrack(*, request):
    UserSession.objects.filter(session_key=request.session.session_key).delete()


def sessions_purge():
    """Forget tracked sessions whose stored session has expired or gone."""
    Session.objects.filter(expire_date__lt=timezone.now()).delete()
    live = Session.objects.values("session_key")
    deleted, _ = UserSession.objects.exclude(session_key__in=live).delete()
    return deleted


# SSH keys ----------------------------------------------------------------------

# What a key may be: modern types, and RSA of 3072 bits or more.
SSH_KEY_MAX_CHARS = 8192  # an RSA key of SSH_RSA_MAX_BITS is about 2,800 characters
SSH_RSA_MAX_BITS = 16384
SSH_KEY_KINDS = {"ssh-ed25519": None, "ecdsa-sha2-nistp256": None, "ecdsa-sha2-nistp384": None,
                 "ecdsa-sha2-nistp521": None, "ssh-rsa": 3072}


def ssh_key_parse(text):
    """(kind, bits, fingerprint, the key as one OpenSSH line) of a pasted public key, or ValidationError."""
    text = " ".join((text or "").split())
    if not text:
        raise refusal(ERRORS, "key_required")
    if "PRIVATE KEY" in text:
        raise refusal(ERRORS, "key_private")
    invalid = refusal(ERRORS, "key_invalid")
    if len(text) > SSH_KEY_MAX_CHARS:
        raise invalid
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError, TypeError, OverflowError):  # a negative RSA integer is an OverflowError
        raise invalid from None
    kind = key.algorithm.decode()
    if kind not in SSH_KEY_KINDS:
        raise refusal(ERRORS, "key_kind", kind=kind)
    bits = key.pyca_key.key_size if hasattr(key.pyca_key, "key_size") else 256
    if SSH_KEY_KINDS[kind] and bits < SSH_KEY_KINDS[kind]:
        raise refusal(ERRORS, "key_weak", bits=bits, least=SSH_KEY_KINDS[kind])
    if kind == "ssh-rsa":
        numbers = key.pyca_key.public_numbers()
        # Every check costs the gateway a modular exponentiation of this size; a real key is odd in both.
        if bits > SSH_RSA_MAX_BITS or numbers.n % 2 == 0 or numbers.e % 2 == 0 or numbers.e < 3:
            raise invalid
    return kind, bits, key.get_fingerprint("sha256"), key.export_public_key("openssh").decode().strip()


@transaction.atomic
def ssh_key_add(*, user, name, public_key, request=None):
    kind, bits, fingerprint, line = ssh_key_parse(public_key)
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.ssh_keys.count() >= settings.SSH_KEYS_PER_USER:
        raise refusal(ERRORS, "too_many_keys", limit=settings.SSH_KEYS_PER_USER)
    if SshKey.objects.filter(fingerprint=fingerprint).exists():
        raise refusal(ERRORS, "key_taken", "public_key")
    try:
        with transaction.atomic():
            key = SshKey.objects.create(user=user, name=name, public_key=f"{line} {name}", kind=kind, bits=bits, fingerprint=fingerprint)
    except IntegrityError:
        raise refusal(ERRORS, "key_taken", "public_key") from None
    activity_log(action=Action.SSH_KEY_ADDED, user=user, target=fingerprint, request=request,
                 message=f"Added SSH key “{name}” ({kind}, {fingerprint})")
    return key


@transaction.atomic
def ssh_key_remove(*, user, key, request=None):
    """The key goes, and with it (within seconds, at the gateway) the sessions it opened."""
    key.delete()
    activity_log(action=Action.SSH_KEY_REMOVED, user=user, target=key.fingerprint, request=request,
                 message=f"Removed SSH key “{key.name}” ({key.fingerprint})")


def ssh_address(request):
    """(host, port) users type to reach the SSH gateway, or None when there is none."""
    if not settings.SSH_BIND:
        return None
    return settings.SSH_PUBLIC_HOST or request.get_host().rsplit(":", 1)[0].strip("[]"), settings.SSH_PUBLIC_PORT


def ssh_host_key_fingerprint():
    """The SSH gateway's host key fingerprint (it makes the key at its first start), or None."""
    try:
        return asyncssh.import_public_key(settings.SSH_HOST_KEY.with_suffix(".pub").read_text()).get_fingerprint("sha256")
    except (OSError, asyncssh.KeyImportError, ValueError):
        return None
