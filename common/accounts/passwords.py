"""Password hashing with Argon2id, at OWASP's recommended parameters.

OWASP's Password Storage Cheat Sheet: m = 19 MiB, t = 2, p = 1. argon2-cffi's default (RFC
9106's "low memory" profile, 64 MiB, t = 3, p = 4) costs 64 MiB and ~150 ms of CPU per login
here, so a burst of logins could take a web worker's memory several times over; this costs
19 MiB and ~35 ms. Hashes made with other parameters still verify and are rehashed at the
next successful login. Hashing and verifying run through `off_loop`: under the gevent web
worker those 35 ms of C would otherwise freeze every request of the process.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from common.infra.cooperative import off_loop

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the username is unknown, so both failures cost the same time.
_DUMMY_HASH = _hasher.hash("an unguessable dummy password for timing parity")


def hash_password(password: str) -> str:
    return off_loop(_hasher.hash, password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; a None hash still spends the full verification time."""
    try:
        return off_loop(_hasher.verify, password_hash or _DUMMY_HASH, password) \
            and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


# --- The password policy (NIST SP 800-63B, section 5.1.1.2) --------------------------------
# Length is the rule, no composition rules; at least 8 characters, 12 for admins, whose
# accounts are worth more; 256 at most (Argon2 takes any length, this bounds the work a login
# costs). Passwords found in a list of common and breached ones are refused: the 30,000 most
# common passwords of zxcvbn's bundled frequency list (from leaked password dumps), pinned in
# requirements.txt. Compared case-folded, since "Password" is as guessable as "password".
MIN_PASSWORD_CHARS = 8
MIN_ADMIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 256


@functools.cache
def _common_passwords() -> frozenset[str]:
    # Loaded on first use: the module holds every zxcvbn list (~7 MB), kept only for this one.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def password_problem(password: str, *, admin: bool) -> str | None:
    """Why `password` is refused by the policy, or None when it is acceptable."""
    minimum = MIN_ADMIN_PASSWORD_CHARS if admin else MIN_PASSWORD_CHARS
    if len(password) < minimum:
        who = "an admin's password" if admin else "a password"
        return f"{who} needs at least {minimum} characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"a password has at most {MAX_PASSWORD_CHARS} characters"
    if password.casefold() in _common_passwords():
        return "this password is in a list of common or breached passwords; choose another"
    return None
