"""No variable can add a header, a recipient or a MIME boundary (reference 8, issue 3)."""

from __future__ import annotations

import email
import email.policy

import pytest
from rt_helpers import msg, run

from runtime.engine.resources import Resources
from runtime.engine.variables import _TABLE

EVIL = "hi\r\nBcc: x@evil.example\r\n\r\n--BOUND\nX-Inject: 1\0"
EVIL_MSG = (b"Subject: =?utf-8?Q?hi=0D=0ABcc:_x@evil.example=0D=0A?=\n"
            b"X-Evil: a\n") + b"\n--BOUND\n"


@pytest.mark.parametrize("var", sorted(_TABLE))
def test_no_variable_adds_a_header(var: str) -> None:
    res = Resources(texts={"t": f"${var}"})
    src = (f"f: if true {{ insert-header('X-Out', '${var} $Header[\"X-Evil\"]');"
           f" bcc('a@example.com', '${var}'); notify('a@example.com', 's ${var}', 'postmaster@example.com', 't');"
           f" log-entry('${var}'); }}")
    t = run(src, EVIL_MSG, mail_from=EVIL, rcpt=("r@example.com",), remote_ip="10.0.0.1",
            listener=EVIL, interface=EVIL, sender_group=EVIL, flow_policy=EVIL, auth_user=EVIL,
            remote_host=EVIL, resources=res)
    out = email.message_from_bytes(t.result, policy=email.policy.default)
    assert out["Bcc"] is None and out["X-Inject"] is None
    assert len(out.get_all("X-Out")) == 1
    for c in t.message_filters.plan.copies:
        copy = email.message_from_bytes(c.data, policy=email.policy.default)
        assert copy["Bcc"] is None and copy["X-Inject"] is None
        assert "\n" not in c.subject and "\r" not in c.target
    assert all("\n" not in line and "\0" not in line for line in t.log)
    assert t.recipients == {"r@example.com": "deliver"}


def test_long_header_values_are_folded() -> None:
    t = run("f: if true { insert-header('X-Long', '$Subject $Subject $Subject'); }",
            msg("Subject: " + "word " * 40 + "\n"))
    lines = t.result.split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b"X-Long:"))
    assert all(len(line) <= 78 for line in lines[start:start + 5])
    assert lines[start + 1].startswith((b" ", b"\t"))
