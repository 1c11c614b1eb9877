"""CMS and DER: SignedData and EnvelopedData as ``smime inspect`` and the verifier read them.

Bad DER must give ``MalformedError`` or ``UnsupportedError`` (both ``SMIMEError``) and nothing
else; a signed structure that parses must let every signer's certificate be looked up.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterator

from fuzz.corpus import VECTORS, files
from fuzz.harness import Target
from smime import _cms_signed as cs
from smime._cms_enveloped import inspect_envelope
from smime.errors import SMIMEError

_PEM_OR_B64 = re.compile(rb"-----BEGIN [A-Z0-9 ]+-----(.*?)-----END", re.S)


def seeds() -> Iterator[bytes]:
    for blob in files(VECTORS, "*.p7m", "*.p7s", "*.bin", "*.der", "*.p7", "*.pem"):
        found = _PEM_OR_B64.search(blob)
        if found is None:
            yield blob
            continue
        try:
            yield base64.b64decode(re.sub(rb"\s+", b"", found.group(1)))
        except ValueError:
            continue


def run(data: bytes) -> None:
    try:
        parsed = cs.parse_signed(data)
    except SMIMEError:
        pass
    else:
        for si in parsed.signed_data["signer_infos"]:
            with contextlib.suppress(SMIMEError):
                cs.find_signer_cert(si, parsed.certificates)
    with contextlib.suppress(SMIMEError):
        inspect_envelope(data)


TARGET = Target("cms", run, seeds, instrument=("smime", "asn1crypto"))
