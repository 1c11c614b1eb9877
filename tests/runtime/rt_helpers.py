"""Shared helpers: run filter source on a message offline and get the trace."""

from __future__ import annotations

from typing import Any

from filterlang import compile_source
from filterlang.compile import CFilter
from filterlang.diagnostics import Severity
from runtime.engine.context import Connection, Envelope, SmimeState
from runtime.engine.resources import Resources
from runtime.engine.services import Services
from runtime.pipeline.offline import simulate
from runtime.pipeline.policies import Policies
from runtime.pipeline.trace import MessageTrace


def msg(headers: str = "Subject: test\nFrom: a@example.com\n", body: str = "hello\n") -> bytes:
    return (headers + "\n" + body).replace("\n", "\r\n").encode("utf-8")


def mime(*parts: tuple[str, str], boundary: str = "BOUND") -> bytes:
    """A multipart/mixed message from (part headers, part body) pairs."""
    out = [f"Subject: mime\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\n"]
    for head, body in parts:
        out.append(f"--{boundary}\n{head}\n\n{body}\n")
    out.append(f"--{boundary}--\n")
    return "\n".join(out).replace("\n", "\r\n").encode("utf-8")


def compiled(src: str) -> tuple[CFilter, ...]:
    """Filter source through parse -> check -> compile, as the runtime loads files."""
    script, diags = compile_source(src, "<test>")
    assert script is not None, [d for d in diags if d.severity is Severity.ERROR]
    return tuple(script.filters)


def run(src: str, raw: bytes, *, mail_from: str = "sender@example.com",
        rcpt: tuple[str, ...] = ("rcpt@example.com",), policies: Policies | None = None,
        resources: Resources | None = None, services: Services | None = None,
        smime: SmimeState | None = None, **conn: Any) -> MessageTrace:
    return simulate(raw, Envelope.simple(mail_from, list(rcpt)), filters=compiled(src),
                     connection=Connection(**conn), smime=smime, policies=policies,
                     resources=resources, services=services)


def matched(src: str, raw: bytes, **kw: Any) -> bool:
    """Whether the single filter ``f`` matched; fails the test on a runtime error."""
    t = run(src, raw, **kw)
    tr = t.message_filters.filters[0]
    assert tr.error is None, tr.error
    return bool(tr.matched)
