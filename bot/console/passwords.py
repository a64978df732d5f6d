"""Editors' passwords: argon2id through argon2-cffi, with its default (RFC 9106 low-memory) parameters.

A hash made with weaker parameters than today's is replaced at the editor's next sign-in.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from content.errors import BadInput

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # argon2 takes any length; this only bounds the work a request can ask for

_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this when the name is unknown costs what a real check costs: the answer's timing
    does not tell which names exist. Made at the first sign-in, not at import: a hash takes about 0.1 s,
    which every `jianbao` command would otherwise pay."""
    return _HASHER.hash("no editor has this password")


def check_new_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise BadInput(f"a password is {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters")
    return password


def hash_password(password: str) -> str:
    return _HASHER.hash(check_new_password(password))


def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether `password` is the one behind `password_hash` (None: no such editor, still checked)."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        return _HASHER.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)
