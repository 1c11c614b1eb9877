"""Step 1 as the work queue sees it: the mail flow policy chosen at receipt decides the
direction (incoming or outgoing tables), and gateway status headers that arrive from outside
are removed before anything reads them (nobody outside may claim "verified by the gateway"):
ours and the verifier's whole X-Filterlang-SMIME-* family, by smime.mime's one mechanism."""

from __future__ import annotations

from attrs import define

from runtime.engine.fieldline import field
from runtime.pipeline.flow import InFlight
from runtime.pipeline.stages import StageContext
from smime.mime import strip_status_headers

STATUS_HEADER = b"X-Filterlang-SMIME"


def add_header(data: bytes, name: bytes, value: str) -> bytes:
    """Prepend one field, through the one builder (ASCII, one line whatever `value` holds)."""
    return field(name.decode("ascii"), value.encode("ascii", "replace").decode("ascii")) + data


@define
class MailFlow:
    ctx: StageContext
    name: str = "mail_flow_policy"

    def process(self, msg: InFlight) -> None:
        policy = self.ctx.config.policies.get(msg.envelope.policy)
        if policy is not None:
            msg.direction = policy.direction
        before = len(msg.data)
        msg.data = strip_status_headers(msg.data, (STATUS_HEADER.decode(),))
        if msg.recording:
            msg.record(self.name, f"mail flow policy {msg.envelope.policy or '(none)'}: "
                       f"{msg.direction}", policy=msg.envelope.policy,
                       action=policy.action if policy else None, direction=msg.direction,
                       status_headers_removed=len(msg.data) != before, data=msg.data)
