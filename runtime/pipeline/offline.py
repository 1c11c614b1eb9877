"""One message through the gateway's own stages with everything recorded: `filterlang test`.

`run_recorded` runs the stages `build_stages` made (from `gateway.toml`) or `memory_stages`
made (from the flags and suite fields of `filterlang test` without a configuration) and returns
the trace, a view of the stages' records. Nothing decides here what the stages decide.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from filterlang.compile import CFilter
from runtime.config.config import (
    Alerts,
    Delivery,
    GatewayConfig,
    MailFlowPolicy,
    Metrics,
    SenderGroup,
    Storage,
)
from runtime.engine.context import Connection, SmimeState
from runtime.engine.context import Envelope as CtxEnvelope
from runtime.engine.resources import Resources
from runtime.engine.run import OnError
from runtime.engine.services import Services
from runtime.pipeline.envelope import Envelope
from runtime.pipeline.flow import (
    InFlight,
    RetryLater,
    Stage,
    build_pipeline,
    prepare_pipeline,
    run_pipeline,
)
from runtime.pipeline.outcome import settle
from runtime.pipeline.policies import Policies, PolicyTable
from runtime.pipeline.stages import StageContext, stages_of
from runtime.pipeline.trace import MessageTrace, build_trace
from smime.trust import TrustStore


def memory_config(connection: Connection, on_error: OnError = "bypass") -> GatewayConfig:
    """The configuration `filterlang test` without `-c` stands for: one mail flow policy of
    the given direction, the given sender group holding the given address, no certificates,
    no sending profiles (a filter that asks for one is answered as the gateway would)."""
    policy = MailFlowPolicy(connection.flow_policy, action="RELAY" if connection.direction
                            == "outgoing" else "ACCEPT", direction=connection.direction)
    groups: tuple[SenderGroup, ...] = ()
    if connection.sender_group:
        try:
            net = ipaddress.ip_network(connection.remote_ip, strict=False)
        except ValueError:
            net = None
        if net is not None:
            groups = (SenderGroup(connection.sender_group, (net,), (), policy.name),)
    return GatewayConfig(
        source=Path("<filterlang test>"), storage=Storage(Path("."), "sqlite:///:memory:"),
        listeners=(), sender_groups=groups, policies={policy.name: policy},
        default_policy=policy.name, certificates={}, profiles={}, message_filters=(),
        incoming_policies=(), outgoing_policies=(), dictionaries={}, text_resources={},
        delivery=Delivery(), quarantines={}, alerts=Alerts(), metrics=Metrics(),
        on_filter_error=on_error)


def _content_filters(filters: Sequence[CFilter], policies: Policies) -> dict[str, list[CFilter]]:
    """Each policy's content filters by name (reference 9.1): a policy without its own list
    inherits the default policy's; no list at all means every filter of the direction."""
    out: dict[str, list[CFilter]] = {}
    for direction in ("incoming", "outgoing"):
        table = policies.table(direction)
        for p in (*table.policies, table.default):
            enabled = p.content_filters if p.content_filters is not None else table.default.content_filters
            out[f"{direction}:{p.name}"] = [
                f for f in filters if f.content is not None and f.content.direction == direction
                and (enabled is None or f.name in enabled)]
    return out


def memory_stages(filters: Sequence[CFilter], connection: Connection, *,
                  policies: Policies | None = None, resources: Resources | None = None,
                  services: Services | None = None, on_error: OnError = "bypass") -> tuple[Stage, ...]:
    """The gateway's stages over compiled filters and an in-memory configuration."""
    policies = policies or Policies()
    tables: dict[str, PolicyTable] = {"incoming": policies.incoming, "outgoing": policies.outgoing}
    ctx = StageContext(memory_config(connection, on_error), {}, [], TrustStore.load(),
                       resources if resources is not None else Resources(),
                       [f for f in filters if f.content is None],
                       _content_filters(filters, policies), tables, services=services)
    return build_pipeline(stages_of(ctx))


def pipeline_envelope(envelope: CtxEnvelope, connection: Connection) -> Envelope:
    """The queue file's envelope for an engine envelope and the connection facts."""
    def opts(params: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
        return tuple(f"{k}={v}" if v else k for k, v in params)

    return Envelope(envelope.mail_from, envelope.rcpt_addresses, opts(envelope.mail_params),
                    tuple(opts(r.params) for r in envelope.recipients), peer=connection.remote_ip,
                    policy=connection.flow_policy, helo=connection.remote_host,
                    listener=connection.listener, auth_user=connection.auth_user,
                    interface=connection.interface)


def run_recorded(stages: tuple[Stage, ...], envelope: Envelope, data: bytes, *,
                 smime: SmimeState | None = None, name: str = "<message>",
                 services: Services | None = None, prepare: bool = False) -> MessageTrace:
    """Run the stages on one message, recording what each did; the trace of that run.
    `smime` stands for an inbound S/MIME result the configuration does not produce itself.
    `services`: recorded provider answers, used instead of asking; else with `prepare` the
    stages ask the configured providers first, as the queue does (SPF, DKIM, DMARC, DNS
    lists, reputation, LDAP groups)."""
    msg = InFlight(envelope, data, records=[], smime=smime or SmimeState())
    if services is not None:
        msg.services, msg.replayed = services, True
    elif prepare and any(hasattr(st, "prepare") for st in stages):
        asyncio.run(prepare_pipeline(stages, msg))
    try:
        run_pipeline(stages, msg)
    except RetryLater as exc:
        msg.record(exc.stage or "message_filters", "filters failed (tempfail)", result=exc.result,
                   error=str(exc))
        return build_trace(name, data, msg, None, tempfail=str(exc))
    return build_trace(name, data, msg, settle(msg))


def simulate(raw: bytes, envelope: CtxEnvelope, *, filters: Sequence[CFilter],
             connection: Connection | None = None, smime: SmimeState | None = None,
             policies: Policies | None = None, resources: Resources | None = None,
             services: Services | None = None, name: str = "<message>",
             on_error: OnError = "bypass") -> MessageTrace:
    """Compiled filters on one message through the gateway's stages, configured in memory."""
    connection = connection or Connection()
    stages = memory_stages(filters, connection, policies=policies, resources=resources,
                           services=services, on_error=on_error)
    return run_recorded(stages, pipeline_envelope(envelope, connection), raw, smime=smime,
                        name=name)
