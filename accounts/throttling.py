"""Counting failures in the shared cache (Redis in production), to slow down guessing.

Keys hash what they count, so emails never sit in the cache in clear.
"""

import hashlib

from django.core.cache import cache


def _key(kind, parts):
    return f"throttle:{kind}:" + hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def is_blocked(kind, *parts, limit):
    return (cache.get(_key(kind, parts)) or 0) >= limit


def record_failure(kind, *parts, window):
    """Count one failure; the count expires `window` seconds after the first one."""
    key = _key(kind, parts)
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)
        return 1


def clear(kind, *parts):
    cache.delete(_key(kind, parts))
