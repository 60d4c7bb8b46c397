"""PIN hashing with scrypt and a per-operator salt; only the hash is ever stored."""

from __future__ import annotations

import hashlib
import hmac
import os

# scrypt cost: ~50 ms per check on the Jetson, slow enough to make guessing expensive.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
KEY_LENGTH = 32
SALT_LENGTH = 16


def hash_pin(pin: str, *, n: int | None = None, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$key`` (hex), self-describing so the cost can be raised later."""
    n = n or SCRYPT_N
    salt = os.urandom(SALT_LENGTH)
    key = hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_LENGTH)
    return f"scrypt${n}${r}${p}${salt.hex()}${key.hex()}"


def pin_matches(pin: str, stored: str) -> bool:
    """True when ``pin`` hashes to ``stored``; a malformed stored hash never matches."""
    try:
        scheme, n, r, p, salt_hex, key_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        key = hashlib.scrypt(
            pin.encode(),
            salt=bytes.fromhex(salt_hex),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(key_hex) // 2,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(key.hex(), key_hex)
