"""Counting attempts to slow down guessing.

Each attempt is counted *before* it is tried, with one atomic statement
(INSERT … ON CONFLICT … DO UPDATE … RETURNING, on PostgreSQL and SQLite
alike), so twenty guesses sent at once are twenty counts, and the local run
counts exactly as production does. A count lives for a fixed window from
its first attempt. Keys hash what they count: no email sits there in clear.
"""

import hashlib
import ipaddress
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone

from .models import ThrottleCount


def client_key(ip):
    """Who a client is for counting: its IPv4 address, or its IPv6 /64 (one
    household or server, which can pick any address in it)."""
    if not ip:
        return "unknown"
    address = ipaddress.ip_address(ip)
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def _key(kind, parts):
    return hashlib.sha256("\x1f".join([kind, *map(str, parts)]).encode()).hexdigest()


# One statement counts an attempt and returns the count, restarting an expired window.
_HIT = """
    INSERT INTO accounts_throttlecount (key, count, expires_at) VALUES (%s, 1, %s)
    ON CONFLICT (key) DO UPDATE SET
        count = CASE WHEN accounts_throttlecount.expires_at <= %s THEN 1 ELSE accounts_throttlecount.count + 1 END,
        expires_at = CASE WHEN accounts_throttlecount.expires_at <= %s THEN excluded.expires_at ELSE accounts_throttlecount.expires_at END
    RETURNING count
"""


def hit(kind, *parts, window):
    """Count one attempt now; returns how many were made in the current window, this one included."""
    now = timezone.now()
    stored = connection.ops.adapt_datetimefield_value  # the database's own form of a time
    with connection.cursor() as cursor:
        cursor.execute(_HIT, [_key(kind, parts), stored(now + timedelta(seconds=window)), stored(now), stored(now)])
        return cursor.fetchone()[0]


def forgive(kind, *parts):
    """Take back one attempt that turned out well."""
    ThrottleCount.objects.filter(key=_key(kind, parts), count__gt=0).update(count=F("count") - 1)


def count(kind, *parts):
    """Attempts made in the current window, without counting one."""
    row = ThrottleCount.objects.filter(key=_key(kind, parts), expires_at__gt=timezone.now()).first()
    return row.count if row else 0


def clear(kind, *parts):
    ThrottleCount.objects.filter(key=_key(kind, parts)).delete()


def purge():
    deleted, _ = ThrottleCount.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


# Browsers an account logged in from: exempt from that account's all-clients limit,
# so an attacker guessing from everywhere cannot lock its owner out.
KNOWN_BROWSER_COOKIE = "controlpanel_known"
_KNOWN_SALT = "accounts.throttling.known-browser"


def _account(email):
    return hashlib.sha256(email.encode()).hexdigest()[:16]


def known_browser(request, email):
    known = request.get_signed_cookie(KNOWN_BROWSER_COOKIE, default="", salt=_KNOWN_SALT,
                                      max_age=timedelta(days=settings.KNOWN_BROWSER_DAYS))
    return _account(email) in known.split(",")


def remember_browser(request, response, email):
    known = request.get_signed_cookie(KNOWN_BROWSER_COOKIE, default="", salt=_KNOWN_SALT,
                                      max_age=timedelta(days=settings.KNOWN_BROWSER_DAYS))
    accounts = [a for a in known.split(",") if a and a != _account(email)][-4:] + [_account(email)]
    response.set_signed_cookie(
        KNOWN_BROWSER_COOKIE, ",".join(accounts), salt=_KNOWN_SALT, max_age=settings.KNOWN_BROWSER_DAYS * 86400,
        httponly=True, secure=settings.SESSION_COOKIE_SECURE, samesite="Lax",
    )


def login_allowed(request, email, client):
    """Count this login attempt and say whether it may be tried: at most
    LOGIN_CLIENT_FAILURE_LIMIT from one client (whatever the account), then
    LOGIN_FAILURE_LIMIT for one account from one client, and
    LOGIN_ACCOUNT_FAILURE_LIMIT for one account from anywhere, which a browser
    that logged in to it before does not count against."""
    window = settings.THROTTLE_WINDOW
    if hit("login-client", client, window=window) > settings.LOGIN_CLIENT_FAILURE_LIMIT:
        return False
    if hit("login", email, client, window=window) > settings.LOGIN_FAILURE_LIMIT:
        return False
    return known_browser(request, email) or hit("login-account", email, window=window) <= settings.LOGIN_ACCOUNT_FAILURE_LIMIT


def login_succeeded(request, response, email, client):
    forgive("login-client", client)
    clear("login", email, client)
    clear("login-account", email)
    remember_browser(request, response, email)
