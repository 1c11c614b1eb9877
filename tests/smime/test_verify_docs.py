"""docs/smime-verify.md documents every reason code the verifier can return."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["smime/verify.py", "smime/_cms_signed.py", "smime/_cms_check.py", "smime/_path.py"]
# A reason is a ("code", text) tuple; field names and modes share the shape, so skip them.
NOT_CODES = {"certificates", "crls", "signers", "sid", "require", "sha256", "sha1"}


def _codes() -> set[str]:
    found: set[str] = set()
    for src in SOURCES:
        text = (ROOT / src).read_text()
        found |= set(re.findall(r'\(\s*"([a-z0-9]+(?:-[a-z0-9]+)*)",', text))
    return found - NOT_CODES


def test_every_reason_code_is_documented() -> None:
    doc = (ROOT / "docs/smime-verify.md").read_text()
    table = set(re.findall(r"^\| `([a-z0-9-]+)`(?:, `([a-z0-9-]+)`)?", doc, re.M))
    documented = {c for pair in table for c in pair if c}
    codes = _codes()
    assert len(codes) > 30
    assert codes - documented == set()
