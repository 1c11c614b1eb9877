"""S/MIME MIME: a whole message as ``smime inspect`` and ``smime verify`` read it.

Any bytes give either a verification result (verified or with reason codes) or an
``SMIMEError``; never another exception. Nothing is trusted here, so no input can verify; the
point is the path from raw bytes through the MIME structure, base64 and the CMS parser.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

from fuzz.corpus import VECTORS, files
from fuzz.harness import Target
from smime import mime
from smime.compose import is_smime
from smime.errors import SMIMEError
from smime.trust import TrustStore
from smime.verify import verify

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EMPTY = TrustStore()


def seeds() -> Iterator[bytes]:
    yield from files(VECTORS, "*.eml", "*.message", "*.msg")


def run(data: bytes) -> None:
    is_smime(data)
    with contextlib.suppress(SMIMEError):
        mime.locate_signed(mime.to_crlf(data))
    mime.inner_from(data)
    try:
        result = verify(data, trust=EMPTY, now=NOW)
    except SMIMEError:
        return
    assert not result.verified, "verified with no trust anchor"


TARGET = Target("smime_mime", run, seeds, instrument=("smime", "asn1crypto", "email"))
