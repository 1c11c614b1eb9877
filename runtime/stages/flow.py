"""Step 1 as the work queue sees it: the mail flow policy chosen at receipt decides the
direction (incoming or outgoing tables), and gateway status headers that arrive from outside
are removed before anything reads them (nobody outside may claim "verified by the gateway")."""

from __future__ import annotations

from attrs import define

from runtime.pipeline import InFlight
from runtime.stages import StageContext

STATUS_HEADER = b"X-Filterlang-SMIME"


def header_end(data: bytes) -> int:
    """Offset of the blank line that ends the header block (len(data) if there is none)."""
    if data.startswith(b"\r\n"):
        return 0
    end = data.find(b"\r\n\r\n")
    return len(data) if end < 0 else end + 2


def strip_header(data: bytes, name: bytes) -> bytes:
    """`data` without every top-level field called `name` (continuation lines included)."""
    end = header_end(data)
    head, rest = data[:end], data[end:]
    key = name.lower() + b":"
    if key not in head.lower():
        return data
    out: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        dropping = line.lower().replace(b" :", b":").startswith(key)
        if not dropping:
            out.append(line)
    return b"\r\n".join(out) + rest


def add_header(data: bytes, name: bytes, value: str) -> bytes:
    """Prepend one field; values are ours (ASCII, one line)."""
    clean = " ".join(value.encode("ascii", "replace").decode("ascii").split())[:900]
    return name + b": " + clean.encode("ascii") + b"\r\n" + data


@define
class MailFlow:
    ctx: StageContext
    name: str = "mail_flow_policy"

    def process(self, msg: InFlight) -> None:
        policy = self.ctx.config.policies.get(msg.envelope.policy)
        if policy is not None:
            msg.direction = policy.direction
        msg.data = strip_header(msg.data, STATUS_HEADER)
