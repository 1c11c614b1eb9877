"""Give freed heap memory back to the operating system after a large message.

aiosmtpd receives a message as one small buffer per line; once they are joined and freed,
glibc keeps those pages in the process's heap, so the memory of a 50 MB message would stay
resident and add to the peak of whatever the worker does next (signing it, for instance).
`malloc_trim(0)` returns free heap pages to the kernel. It costs a walk of the heap, so it is
only called after messages large enough to matter. Without glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

LARGE = 4 * 1024 * 1024  # bytes: below this the heap growth is noise

M_MMAP_THRESHOLD = -3  # mallopt parameters (malloc.h)
M_ARENA_MAX = -8
# Just above asyncio's read buffer (256 KB, plus the bytes object's header): at exactly 256 KB
# every recv() on every socket took an mmap, an mremap, a munmap and fresh pages, a tenth of
# a gateway process's kernel time. Much higher, and a 50 MB message's pieces stay in the heap.
MMAP_THRESHOLD = 320 * 1024

_trim: Any
_mallopt: Any
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim, _mallopt = _libc.malloc_trim, _libc.mallopt
    _trim.argtypes = [ctypes.c_size_t]
    _mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
except (OSError, AttributeError):
    _trim = _mallopt = None


def tune_malloc(arenas: int = 2) -> None:
    """Call before starting threads. glibc gives each thread that allocates its own arena (up
    to 8 per core) and raises its mmap threshold as large blocks are freed, so the pieces of a
    large message could stay resident in some arena while the next copy is made. Two arenas
    and a fixed threshold (blocks above it are mmap'd and go back to the kernel when freed)
    keep a worker's peak close to the data it really holds."""
    if _mallopt is not None:
        _mallopt(M_ARENA_MAX, arenas)
        _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def after_message(size: int) -> None:
    """Call when a message of `size` bytes was dropped from memory."""
    if _trim is not None and size >= LARGE:
        _trim(0)


def trim() -> None:
    """Return every free heap page now (after a burst of connections, say)."""
    if _trim is not None:
        _trim(0)
