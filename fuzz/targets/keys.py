"""Key import: ``filterlang keys import`` on any file, and any DER as a partner's certificate.

The first byte picks the form: odd, the rest is an export file (read as the command reads it);
even, the rest is DER wrapped in one PEM entry, so the fuzzer works on the certificate itself.
The contract: the import succeeds or raises ``ImportFileError`` naming a line; never another
exception (``keys import`` reports a ``KeyStoreError`` in one line, and prints a
traceback for anything else).
"""

from __future__ import annotations

import atexit
import base64
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fuzz.corpus import VECTORS, files
from fuzz.harness import Target
from smime.errors import KeyStoreError
from smime.keystore import ImportFileError, KeyStore, exportfile, open_keystore
from smime.keystore._cert import pem_of

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)
RENEW_EVERY = 1000  # imports between fresh stores (successful imports accumulate keys)


def _ders() -> Iterator[bytes]:
    for blob in files(VECTORS, "*.crt", "*.cer", "*.pem"):
        found = _PEM.search(blob)
        if found is None:
            yield blob
        else:
            try:
                yield base64.b64decode(re.sub(rb"\s+", b"", found.group(1)))
            except ValueError:
                continue


def seeds() -> Iterator[bytes]:
    ders = list(_ders())[:200]
    for der in ders:
        yield b"\0" + der
    entries = "".join(f"\nname: partner{i}\n{pem_of(der)}" for i, der in enumerate(ders[:3]))
    yield b"\1" + (exportfile.HEADER + "\n" + entries).encode("ascii")


class _Store:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="filterlang-fuzz-keys-"))
        atexit.register(shutil.rmtree, self.dir, True)
        self.imports = 0
        self.store: KeyStore | None = None

    def get(self) -> KeyStore:
        self.imports += 1
        if self.store is None or self.imports % RENEW_EVERY == 0:
            if self.store is not None:
                self.store.close()
            (self.dir / "keys.sqlite3").unlink(missing_ok=True)
            self.store = open_keystore(f"sqlite:///{self.dir / 'keys.sqlite3'}")
        return self.store


_store: _Store | None = None


def run(data: bytes) -> None:
    global _store
    if not data:
        return
    if data[0] % 2:
        text = data[1:].decode("ascii", errors="replace")
    else:
        text = f"{exportfile.HEADER}\n\nname: partner\n{pem_of(data[1:])}"
    if _store is None:
        _store = _Store()
    try:
        entries = exportfile.parse(text)
        _store.get().import_public(entries)
    except ImportFileError as exc:
        assert exc.line >= 1, exc
    except KeyStoreError as exc:  # the other errors `keys import` reports in one line
        assert str(exc), exc


TARGET = Target("keys", run, seeds, instrument=("smime", "cryptography"))
