"""Django's bcrypt hashers, made safe for hashes we did not make.

A stored hash that is malformed (a broken salt made bcrypt raise) or that
costs more than BCRYPT_MAX_COST rounds (cost 31 would take days to check: an
anonymous denial of service) never matches. It is logged, and the login
costs one ordinary hash, like a login for an unknown email.
"""

import logging
import re

from django.conf import settings
from django.contrib.auth import hashers

log = logging.getLogger(__name__)
BCRYPT_HASH = re.compile(r"\$2[aby]\$(?P<cost>[0-9]{2})\$[./A-Za-z0-9]{53}")


def bcrypt_cost(raw_hash):
    """The cost of a raw bcrypt hash ($2b$12$...), or None if it is not a well-formed one."""
    match = BCRYPT_HASH.fullmatch(raw_hash or "")
    return int(match["cost"]) if match else None


class _Bounded:
    def _checkable(self, encoded):
        cost = bcrypt_cost(encoded.partition("$")[2])
        if cost is None or not 4 <= cost <= settings.BCRYPT_MAX_COST:
            log.warning("a stored %s hash is malformed or costs more than %s rounds: it never matches",
                        self.algorithm, settings.BCRYPT_MAX_COST)
            return False
        return True

    def verify(self, password, encoded):
        if not self._checkable(encoded):
            self.encode(password, self.salt())  # the same work as any other refusal
            return False
        return super().verify(password, encoded)

    def must_update(self, encoded):
        return self._checkable(encoded) and super().must_update(encoded)

    def harden_runtime(self, password, encoded):
        if self._checkable(encoded):
            super().harden_runtime(password, encoded)

    def safe_summary(self, encoded):
        return super().safe_summary(encoded) if self._checkable(encoded) else {"algorithm": self.algorithm}


class BCryptSHA256PasswordHasher(_Bounded, hashers.BCryptSHA256PasswordHasher):
    pass


class BCryptPasswordHasher(_Bounded, hashers.BCryptPasswordHasher):
    pass
