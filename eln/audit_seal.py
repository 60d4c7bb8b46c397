"""The audit trail's key and anchor: what a person with SQL access alone cannot forge.

The hash chain (eln.audit) shows that an entry was altered, but anyone who can write the
database can recompute it from scratch, or cut its tail and move the head back. Two things
kept outside the database close that:

* the **audit key** (``notebook.audit_key_file``, hex, mode 600, created on first use):
  every entry carries ``seal = HMAC-SHA256(key, hash)``; a chain recomputed without the key
  has no valid seals;
* the **anchor** (``notebook.audit_anchor_file``): after every commit that appended entries,
  the newest entry id and hash this station wrote, sealed with the key. A chain that no
  longer holds the anchored entry (truncated) or holds another one there (rewritten) fails
  ``bptwin audit verify``.

The key is attached to a database URL in this process (:func:`attach_seal`); every audited
write through any engine on that URL is then sealed and anchored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock
from sqlalchemy.engine import URL, Connection, Engine

KEY_BYTES = 32


class AuditKeyError(ValueError):
    """An audit key or anchor file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Anchor:
    """The newest audit entry a station wrote: its id and hash."""

    last_id: int
    last_hash: str


@dataclass(frozen=True)
class AuditSeal:
    """The station's audit key and where its anchor is kept."""

    key: bytes = field(repr=False)
    anchor_path: Path | None = None
    key_path: Path | None = None

    def seal(self, entry_hash: str) -> str:
        return hmac.new(self.key, entry_hash.encode("ascii"), hashlib.sha256).hexdigest()

    def holds(self, entry_hash: str, seal: str | None) -> bool:
        return seal is not None and hmac.compare_digest(self.seal(entry_hash), seal)

    # ------------------------------------------------------------ anchor

    def _anchor_seal(self, anchor: Anchor) -> str:
        return self.seal(f"anchor:{anchor.last_id}:{anchor.last_hash}")

    def read_anchor(self) -> Anchor | None:
        """The anchored entry, None when no anchor was written yet; AuditKeyError if forged."""
        if self.anchor_path is None or not self.anchor_path.exists():
            return None
        where = f"notebook.audit_anchor_file: {self.anchor_path}"
        try:
            data = json.loads(self.anchor_path.read_text(encoding="utf-8"))
            anchor = Anchor(int(data["last_id"]), str(data["last_hash"]))
            seal = str(data["seal"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AuditKeyError(f"{where} cannot be read as an anchor ({exc})") from None
        if not hmac.compare_digest(self._anchor_seal(anchor), seal):
            raise AuditKeyError(f"{where} is not sealed with this station's audit key")
        return anchor

    def advance_anchor(self, anchor: Anchor) -> None:
        """Move the anchor forward to ``anchor`` (never back); other processes take turns."""
        if self.anchor_path is None:
            return
        path = self.anchor_path
        with FileLock(path.with_name(path.name + ".lock"), thread_local=False):
            try:
                current = self.read_anchor()
            except AuditKeyError:
                current = None  # verify reports a forged anchor; a writer replaces it
            if current is not None and current.last_id >= anchor.last_id:
                return
            body = {
                "last_id": anchor.last_id,
                "last_hash": anchor.last_hash,
                "seal": self._anchor_seal(anchor),
            }
            temporary = path.with_name(path.name + ".tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(body, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)


# ---------------------------------------------------------------- the key file


def load_or_create_key(path: Path | str, setting: str = "notebook.audit_key_file") -> bytes:
    """The audit key from ``path`` (hex, a regular file of this user, mode 600 or stricter);
    created with a fresh random key when it does not exist yet."""
    path = Path(path).expanduser()
    where = f"{setting}: {path}"
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it a moment ago: read theirs
        except OSError as exc:
            raise AuditKeyError(f"{where} cannot be created: {exc.strerror}") from None
        else:
            with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(KEY_BYTES) + "\n")
    try:
        info = path.stat()
    except OSError as exc:
        raise AuditKeyError(f"{where} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise AuditKeyError(f"{where} is not a regular file")
    if info.st_mode & 0o077:
        raise AuditKeyError(
            f"{where} is readable or writable by others (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run 'chmod 600 {path}'"
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise AuditKeyError(f"{where} belongs to another user (uid {info.st_uid})")
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, ValueError):
        raise AuditKeyError(f"{where} must hold the key as hexadecimal text") from None
    if len(key) < KEY_BYTES:
        raise AuditKeyError(f"{where}: an audit key needs {2 * KEY_BYTES} hex digits")
    return key


def seal_from_files(key_path: Path | str, anchor_path: Path | str | None) -> AuditSeal:
    key_path = Path(key_path).expanduser()
    anchor = Path(anchor_path).expanduser() if anchor_path is not None else None
    return AuditSeal(load_or_create_key(key_path), anchor_path=anchor, key_path=key_path)


# ---------------------------------------------------------------- which database is sealed

_SEALS: dict[str, AuditSeal] = {}


def _url_key(url: str | URL) -> str:
    from sqlalchemy.engine import make_url

    rendered = make_url(url) if isinstance(url, str) else url
    return rendered.render_as_string(hide_password=True)


def attach_seal(url: str | URL, seal: AuditSeal) -> None:
    """Seal and anchor every audited write to the database at ``url`` in this process."""
    _SEALS[_url_key(url)] = seal


def detach_seal(url: str | URL) -> None:
    _SEALS.pop(_url_key(url), None)


def seal_for(bind: Engine | Connection | Any) -> AuditSeal | None:
    """The seal attached to the database ``bind`` talks to, if any."""
    engine = bind.engine if isinstance(bind, Connection) else bind
    url = getattr(engine, "url", None)
    return None if url is None else _SEALS.get(_url_key(url))
