"""Protected/unprotected detection for archives and documents (``attachment-protected``)."""

from __future__ import annotations

import io
import struct
import zipfile
from typing import Literal

Protection = Literal["protected", "unprotected", "both", "corrupt"]


def protection(data: bytes, fingerprint: str) -> Protection:
    """Whether the scanner can read the file; a zip with both kinds of members is ``both``."""
    if fingerprint in ("zip", "docx", "xlsx", "pptx", "java"):
        return _zip(data)
    if fingerprint == "pdf":
        # an /Encrypt dictionary in the trailer means an open password or encryption
        return "protected" if b"/Encrypt" in data[-65536:] or b"/Encrypt" in data[:65536] else "unprotected"
    if fingerprint in ("doc", "xls", "ppt", "ole"):
        # OOXML files with a password are OLE containers holding an EncryptedPackage stream
        return "protected" if "EncryptedPackage".encode("utf-16-le") in data else "unprotected"
    if fingerprint == "7z":
        return _sevenzip(data)
    if fingerprint == "rar":
        return _rar(data)
    return "unprotected"


def _zip(data: bytes) -> Protection:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            flags = [info.flag_bits & 0x1 for info in zf.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, ValueError, OSError, struct.error):
        return "corrupt"
    enc = any(flags)
    clear = any(not f for f in flags)
    if enc and clear:
        return "both"
    return "protected" if enc else "unprotected"


def _sevenzip(data: bytes) -> Protection:
    # AES-256 coder id 06 F1 07 01 appears in the (unencrypted) header of encrypted archives;
    # an encrypted header hides everything, so the marker is found either way.
    return "protected" if b"\x06\xf1\x07\x01" in data else "unprotected"


def _rar(data: bytes) -> Protection:
    if data.startswith(b"Rar!\x1a\x07\x01\x00"):  # RAR5: archive encryption header type 4
        return "protected" if b"\x04\x00\x00" in data[8:64] or b"\x04\x00\x01" in data[8:64] else "unprotected"
    # RAR4 main header flag 0x0080 = encrypted headers; file header flag 0x0004 = encrypted file
    if len(data) > 12:
        main_flags = struct.unpack("<H", data[10:12])[0]
        if main_flags & 0x0080:
            return "protected"
    if len(data) > 24 and struct.unpack("<H", data[23:25])[0] & 0x0004:
        return "protected"
    return "unprotected"
