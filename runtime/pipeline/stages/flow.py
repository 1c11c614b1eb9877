"""Step 1 as the work queue sees it: the mail flow policy chosen at receipt decides the
direction (incoming or outgoing tables; an authenticated session's mail goes out), and gateway status headers that arrive from outside
are removed before anything reads them (nobody outside may claim "verified by the gateway"):
ours and the verifier's whole X-Filterlang-SMIME-* family, by smime.mime's one mechanism."""

from __future__ import annotations

from attrs import define

from runtime.engine.fieldline import field
from runtime.engine.providers.auth import strip_ours
from runtime.pipeline.flow import InFlight
from runtime.pipeline.recorded import summary
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

    def _direction(self, msg: InFlight) -> str:
        policy = self.ctx.config.policies.get(msg.envelope.policy)
        if policy is None:
            return msg.direction
        if msg.envelope.auth_user and policy.auth_relay:
            # Our own user, authenticated: their mail goes out, whatever the policy of the
            # address they submitted from (reference 10.1: RELAY includes sessions that
            # relayed after SMTP authentication).
            return "outgoing"
        return policy.direction

    async def prepare(self, msg: InFlight) -> None:
        """The message's SPF, DKIM, DMARC and ARC results and DNS list answers (issue 16),
        worked out here in the loop so the filters only read them."""
        providers = self.ctx.providers
        if providers is not None:
            msg.services = await providers.for_message(msg.envelope, msg.data,
                                                       self._direction(msg), self.ctx.services)

    def process(self, msg: InFlight) -> None:
        policy = self.ctx.config.policies.get(msg.envelope.policy)
        msg.direction = self._direction(msg)
        before = len(msg.data)
        msg.data = strip_status_headers(msg.data, (STATUS_HEADER.decode(),))
        removed = len(msg.data) != before  # (before our Authentication-Results goes on)
        self._authentication_results(msg)
        if msg.recording:
            # What each provider answered (or the recorded answers replayed), as the filters
            # are given them: `filterlang test -c` shows it.
            services = msg.services if msg.services is not None else self.ctx.services
            msg.record(self.name, f"mail flow policy {msg.envelope.policy or '(none)'}: "
                       f"{msg.direction}", policy=msg.envelope.policy,
                       action=policy.action if policy else None, direction=msg.direction,
                       status_headers_removed=removed, data=msg.data,
                       services=summary(services))

    def _authentication_results(self, msg: InFlight) -> None:
        """RFC 8601 5: arriving Authentication-Results that claim our authserv-id go (they
        would pass for our verdict); then inbound mail gets ours, one field, first."""
        auth = self.ctx.config.authentication
        if auth is None:
            return
        msg.data, removed = strip_ours(msg.data, auth.authserv_id)
        if removed:
            msg.trace.append(f"removed {removed} arriving Authentication-Results claiming "
                             f"{auth.authserv_id}")
        verdict = getattr(msg.services, "auth", None)
        if msg.direction == "incoming" and verdict is not None:
            parts = verdict.header_parts(auth.authserv_id)
            msg.data = field("Authentication-Results", *parts) + msg.data
            # The same results in the message's tracking lines, for the operator.
            msg.trace.append("authentication: " + " ".join(parts[1:] or parts))
