"""Content sniffing for ``attachment-filetype``: the type comes from the bytes, not the name."""

from __future__ import annotations

# (magic prefix, offset, fingerprint); the first match wins, so longer signatures come first.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"MZ", 0, "exe"),
    (b"\x7fELF", 0, "elf"),
    (b"%PDF", 0, "pdf"),
    (b"PK\x03\x04", 0, "zip"),
    (b"PK\x05\x06", 0, "zip"),
    (b"7z\xbc\xaf\x27\x1c", 0, "7z"),
    (b"Rar!\x1a\x07", 0, "rar"),
    (b"\x1f\x8b", 0, "gzip"),
    (b"BZh", 0, "bzip2"),
    (b"\x1f\x9d", 0, "compress"),
    (b"ustar", 257, "tar"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "ole"),
    (b"{\\rtf", 0, "rtf"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"BM", 0, "bmp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"8BPS", 0, "psd"),
    (b"\xca\xfe\xba\xbe", 0, "java"),
)

_OLE_BY_EXT = {".doc": "doc", ".xls": "xls", ".ppt": "ppt", ".msi": "msi", ".mpp": "mpp"}
_ZIP_BY_EXT = {".docx": "docx", ".xlsx": "xlsx", ".pptx": "pptx", ".jar": "java"}

GROUPS: dict[str, frozenset[str]] = {
    "document": frozenset({"doc", "mdb", "mpp", "ole", "pdf", "ppt", "rtf", "wps", "x-wmf", "xls",
                           "docx", "xlsx", "pptx"}),
    "executable": frozenset({"exe", "java", "msi", "pif", "elf"}),
    "compressed": frozenset({"zip", "7z", "rar", "gzip", "bzip2", "compress", "tar"}),
    "image": frozenset({"png", "jpeg", "gif", "bmp", "tiff", "psd"}),
}


def sniff(head: bytes, filename: str = "") -> str:
    """The fingerprint of a file from its first bytes; ``text`` or ``unknown`` otherwise."""
    ext = filename[filename.rfind("."):].lower() if "." in filename else ""
    for magic, offset, kind in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            if kind == "ole":
                return _OLE_BY_EXT.get(ext, "ole")
            if kind == "zip":
                return _ZIP_BY_EXT.get(ext, "zip")
            return kind
    if head and all(b in b"\t\n\r" or 32 <= b < 127 or b >= 128 for b in head[:512]):
        return "text"
    return "unknown"


def matches(fingerprint: str, wanted: str) -> bool:
    """``wanted`` is a single fingerprint or a group name (case-insensitive)."""
    w = wanted.strip().lower()
    group = GROUPS.get(w)
    return fingerprint in group if group is not None else fingerprint == w
