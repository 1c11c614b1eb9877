"""Free space on the spool's filesystem, as the listener asks at every MAIL.

A client told `452 4.3.1` at MAIL tries again later without sending a byte; one refused after
its whole upload has sent it for nothing, and a queue that fills the disk to the last block
leaves no room for the deferred rewrites and bounces of the mail already accepted. So the
listener keeps a reserve (`[storage] min_free_space`) and refuses new mail below it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CHECK_EVERY = 0.25  # seconds: statvfs at most this often per process (not once per MAIL)


class FreeSpace:
    def __init__(self, path: Path, reserve: int) -> None:
        self.path = str(path)
        self.reserve = reserve
        self._free = 0
        self._checked = -CHECK_EVERY

    def free(self) -> int | None:
        """Bytes an unprivileged writer may still use, or None when the lookup failed."""
        now = time.monotonic()
        if now - self._checked >= CHECK_EVERY:
            try:
                st = os.statvfs(self.path)
            except OSError:
                return None
            self._free = st.f_bavail * st.f_frsize
            self._checked = now
        return self._free

    def enough(self, incoming: int = 0) -> bool:
        """Whether a message of `incoming` bytes leaves the reserve free. A failed lookup
        says yes: the write itself reports a full disk (451), never a lost message."""
        if self.reserve <= 0 and not incoming:
            return True
        free = self.free()
        return free is None or free - incoming >= self.reserve
