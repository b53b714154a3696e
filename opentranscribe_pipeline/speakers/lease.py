"""The speaker state's writer lease: one writer at a time, a dead one does not block.

``<root>/_speakers/lease.json`` is created conditionally (``storage.conditional``: S3
``If-None-Match``, ``flock`` locally) with an expiry, so a second writer waits for the first
instead of failing, and an expired lease, or one whose holder on this host was killed, is
taken over conditionally. The lease only makes writers queue; what keeps two of them from
both committing is the manifest's compare-and-swap (:meth:`.state.SpeakerState.commit`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator

from ..storage import Warehouse
from ..storage.conditional import PreconditionFailed, read_versioned, write_if

log = logging.getLogger(__name__)


class SpeakerStateBusy(RuntimeError):
    """Another writer holds the lease and did not finish within the wait."""


@contextlib.contextmanager
def hold_lease(wh: Warehouse, path: str, *, ttl_s: float, wait_s: float) -> Iterator[None]:
    """Hold the writer lease at ``path`` (a lease of ``ttl_s``): wait (up to ``wait_s``)
    while another writer holds a live one, take over one whose holder let it expire or
    whose process on this host died."""
    me = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
    deadline = time.monotonic() + wait_s
    delay = 0.2
    while True:
        body = json.dumps({"owner": me, "expires_at": time.time() + ttl_s}).encode()
        held = read_versioned(wh, path)
        try:
            if held is None:
                write_if(wh, path, body, expect=None)
                break
            lease = json.loads(held.data)
            if lease.get("expires_at", 0) < time.time() or _holder_died(lease.get("owner", "")):
                log.warning(
                    "taking over the speaker state lease of %s (expired or its process died)", lease.get("owner")
                )
                write_if(wh, path, body, expect=held.version)
                break
        except PreconditionFailed:
            pass  # someone else got it first
        if time.monotonic() > deadline:
            owner = json.loads(held.data).get("owner") if held is not None else "?"
            raise SpeakerStateBusy(
                f"the speaker state of {wh.root_uri} is being written by {owner}; "
                f"waited {wait_s:.0f} s (it expires by itself if that writer died)"
            )
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    try:
        yield
    finally:
        held = read_versioned(wh, path)
        if held is not None and json.loads(held.data).get("owner") == me:
            wh.remove(path)


def _holder_died(owner: str) -> bool:
    """A lease holder on this very host whose process no longer exists (killed)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
