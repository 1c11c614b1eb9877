"""A server process a test starts on loopback (NSD, slapd, Rspamd, clamd): stopped on exit,
SIGTERM first, then SIGKILL if it does not go within 15 seconds."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Self


class Daemon:
    proc: subprocess.Popen[bytes] | None = None
    # Signal the whole process group (started with start_new_session): a server that forks
    # workers (Rspamd) leaves none behind.
    group = False

    def start(self) -> Self:
        raise NotImplementedError

    def _signal(self, proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        if self.group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        self._signal(proc, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
