"""Password hashing with Argon2id, at OWASP's recommended parameters.

OWASP's Password Storage Cheat Sheet: m = 19 MiB, t = 2, p = 1. argon2-cffi's default (RFC
9106's "low memory" profile, 64 MiB, t = 3, p = 4) costs 64 MiB and ~150 ms of CPU per login
here, so a burst of logins could take a web worker's memory several times over; this costs
19 MiB and ~35 ms. Hashes made with other parameters still verify and are rehashed at the
next successful login.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the username is unknown, so both failures cost the same time.
_DUMMY_HASH = _hasher.hash("an unguessable dummy password for timing parity")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; a None hash still spends the full verification time."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
