"""What keeps the review app's requests inside their rights (Dagster-free).

- Media are addressed by a validated 64-hex ``media_id``, never by a client path; the file an
  id leads to (the ``audio`` table's ``audio_uri``) is checked to lie inside the warehouse root
  after every ``..``, symlink and encoded separator is resolved (:func:`inside_warehouse`).
- CSRF: a signed-in form carries ``csrf_for(session_token)`` (an HMAC keyed by the session
  token, so it is tied to the session, stateless across workers, and reveals nothing about the
  token); the sign-in form, before any session, a double-submit cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from urllib.parse import unquote

from ..storage import Warehouse

MEDIA_ID_RE = re.compile(r"^[0-9a-f]{64}$")
GLOBAL_ID_RE = re.compile(r"^spk-[0-9]{6,}$")
SESSION_COOKIE = "ot_session"
PRESESSION_COOKIE = "ot_signin"  # double-submit token of the sign-in form
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class OutsideWarehouse(PermissionError):
    """A stored path that does not lead to a file inside the warehouse root."""


def valid_media_id(value: str | None) -> str | None:
    """The id if it is exactly 64 lowercase hex digits, else None."""
    return value if isinstance(value, str) and MEDIA_ID_RE.match(value) else None


def valid_speaker_id(value: str | None) -> str | None:
    return value if isinstance(value, str) and GLOBAL_ID_RE.match(value) else None


def _suspicious(uri: str) -> str | None:
    if "\x00" in uri:
        return "a NUL byte"
    if unquote(uri) != uri:
        return "percent-encoding (an encoded separator or dot)"
    if "\\" in uri:
        return "a backslash"
    if any(part in ("..", ".") for part in uri.split("/")[1:]):
        return "a '.' or '..' component"
    return None


def inside_warehouse(wh: Warehouse, uri: str) -> str:
    """The warehouse path of ``uri`` (a stored ``audio_uri``) if it names a file inside the
    warehouse root, else :class:`OutsideWarehouse`. Local: the real path (symlinks resolved)
    must lie under the root's real path; S3: the key must be under the root's prefix."""
    why = _suspicious(uri)
    if why:
        raise OutsideWarehouse(f"refused {uri!r}: {why}")
    if wh.is_local:
        path = uri.removeprefix("file://")
        if not os.path.isabs(path):
            raise OutsideWarehouse(f"refused {uri!r}: not an absolute path of this warehouse")
        root = os.path.realpath(wh.root)
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root or real == root:
            raise OutsideWarehouse(f"refused {uri!r}: it leads outside the warehouse {wh.root_uri}")
        return real
    prefix = wh.root_uri.rstrip("/") + "/"
    if not uri.startswith(prefix):
        raise OutsideWarehouse(f"refused {uri!r}: not under the warehouse {wh.root_uri}")
    return wh.path(uri[len(prefix) :])


# -- CSRF ------------------------------------------------------------------------------------------
def csrf_for(session_token: str) -> str:
    """The CSRF token of a session: HMAC-SHA256 keyed by the session token."""
    return hmac.new(session_token.encode(), b"opentranscribe-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_token: str | None, given: str | None) -> bool:
    if not session_token or not given:
        return False
    return hmac.compare_digest(csrf_for(session_token), given)


def new_presession_token() -> str:
    return secrets.token_urlsafe(24)


def presession_ok(cookie: str | None, given: str | None) -> bool:
    return bool(cookie and given) and hmac.compare_digest(cookie, given)
