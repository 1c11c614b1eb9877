"""Message tracking: one JSON-lines record per message and recipient, appended atomically.

Each record is written with a single `write()` on an O_APPEND file, so records from several
worker processes never interleave inside a line.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("filterlang.tracking")

# json.dumps with any option builds a new encoder per call; one, made once, writes the same.
_encode = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=True).encode


class Tracker:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fd: int | None = None
        self._failing = False
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def record(self, event: str, queue_id: str, **fields: Any) -> None:
        if self._fd is None:
            return
        rec = {"ts": round(time.time(), 3), "event": event, "queue_id": queue_id, **fields}
        try:
            os.write(self._fd, (_encode(rec) + "\n").encode("ascii"))
        except OSError as exc:
            # A full or failing disk loses a tracking line, never the message whose delivery it
            # records (raised here, it parked delivered mail in `hold`): logged, once a streak.
            if not self._failing:
                log.error("cannot write %s: %s (tracking records are lost until it can)",
                          self.path, exc.strerror)
            self._failing = True
        else:
            self._failing = False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
