"""The client corpus (`../shared/vectors/clients`, issue 14): the CLI on 137 messages made by
Thunderbird/NSS, KMail/gpgsm, Apple Mail, Gmail, MimeKit's historic mail, notmuch and others.

`run.sh` compares each outcome with what the message's source expects. Every case must agree,
or be one of the policy choices listed in docs/smime-verify.md ("Client corpus") with exactly
the outcome listed there; a listed case that has come to agree must leave the list. The
corpus is read where it lies, beside the checkout: never copied into the project.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "vectors" / "clients"
FILTERLANG = Path(sys.executable).parent / "filterlang"


def _documented() -> dict[str, str]:
    """case -> the outcome docs/smime-verify.md says we report (its Client corpus table)."""
    doc = (ROOT / "docs" / "smime-verify.md").read_text()
    section = doc.split("## Client corpus", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| [^|]+ \| `([^`]+)` \|", section, re.M)
    assert rows, "docs/smime-verify.md has no Client corpus table"
    return dict(rows)


@pytest.mark.vectors
def test_client_corpus_agrees_or_is_a_documented_policy_choice() -> None:
    run_sh = CORPUS / "run.sh"
    if not run_sh.is_file():
        pytest.skip(f"client corpus not found at {CORPUS} (../shared/vectors/clients beside the "
                    "checkout; CI clones shared/ there)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDOUT_")}
    env["HOLDOUT_JOBS"] = "2"  # the machine's two cores: about half the time of one
    proc = subprocess.run(["bash", str(run_sh), str(FILTERLANG)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    lines = [line.split("\t") for line in proc.stdout.splitlines() if line.count("\t") == 3]
    cases = sum(1 for line in (CORPUS / "cases.tsv").read_text().splitlines()
                if line and not line.startswith("#"))
    assert len(lines) == cases, proc.stdout[-2000:] + proc.stderr[-2000:]
    crashed = [(case, got) for case, _exp, got, _ok in lines
               if got.startswith(("crash", "timeout"))]
    assert crashed == []
    disagree = {case: got for case, _exp, got, verdict in lines if verdict != "ok"}
    documented = _documented()
    undocumented = {c: g for c, g in disagree.items() if documented.get(c) != g}
    stale = {c: g for c, g in documented.items() if c not in disagree}
    assert undocumented == {}, "disagreements not listed in docs/smime-verify.md (or listed " \
        "with another outcome)"
    assert stale == {}, "listed in docs/smime-verify.md but they agree now: take them out"
