"""Durable named quarantines: `<data_dir>/quarantine/<name>/<queue id>`, spool file format.

Release hands the message back to the spool's `incoming` marked as processed, so it re-enters
delivery (not the filters that quarantined it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import attrs

from runtime.mta.spool import CorruptEntry, Envelope, Spool, _fsync_dir, decode, encode


class QuarantineError(Exception):
    pass


class Quarantines:
    def __init__(self, root: Path, names: set[str] | frozenset[str]) -> None:
        self.root = Path(root)
        self.names = frozenset(names)

    def _dir(self, name: str, *, create: bool = True) -> Path:
        if name not in self.names:
            raise QuarantineError(f"no quarantine named {name!r} (known: {', '.join(sorted(self.names)) or 'none'})")
        path = self.root / name
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def put(self, name: str, envelope: Envelope, data: bytes) -> None:
        d = self._dir(name)
        tmp = d / f".{envelope.queue_id}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(encode(envelope, data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, d / envelope.queue_id)
        _fsync_dir(d)

    def list(self, name: str) -> list[str]:
        # A read creates nothing: a quarantine nothing was put in yet is simply empty.
        try:
            return sorted(n for n in os.listdir(self._dir(name, create=False)) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def read(self, name: str, queue_id: str) -> tuple[Envelope, bytes]:
        path = self._dir(name, create=False) / queue_id
        if "/" in queue_id or not path.is_file():
            raise QuarantineError(f"no message {queue_id!r} in quarantine {name!r}")
        try:
            return decode(path.read_bytes())
        except CorruptEntry as exc:
            raise QuarantineError(f"{name}/{queue_id} is unreadable: {exc}") from None

    def delete(self, name: str, queue_id: str) -> None:
        self.read(name, queue_id)
        os.unlink(self._dir(name) / queue_id)
        _fsync_dir(self._dir(name))

    def release(self, name: str, queue_id: str, spool: Spool,
                dkim_sign: Callable[[bytes], bytes | None] | None = None) -> None:
        """Back into delivery: write to the spool first (fsync), then remove from quarantine.
        Outgoing mail parked before its DKIM signing is signed now with `dkim_sign`."""
        env, data = self.read(name, queue_id)
        if env.dkim_on_release and dkim_sign is not None:
            data = dkim_sign(data) or data
        spool.rewrite("incoming", attrs.evolve(env, processed=True, next_attempt=0.0,
                                               dkim_on_release=False), data)
        self.delete(name, queue_id)
