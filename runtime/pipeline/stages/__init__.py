"""The real pipeline stages of reference 11, built once per worker from the configuration.

`build_stages(config)` returns the mapping `make_runner(..., stages=...)` takes. Everything a
stage needs that is costly to make (compiled filters, certificates and keys, the trust store,
the key store connection) is loaded here once; a problem becomes one `StageSetupError` line
naming the config key, so `filterlang serve` refuses to start instead of failing per message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attrs import define, field
from cryptography import x509

from filterlang.compile import CFilter
from runtime.config.config import GatewayConfig
from runtime.engine.loader import FilterLoadError, load_program
from runtime.engine.resources import Dictionary, Resources
from runtime.engine.services import Services
from runtime.pipeline.flow import Stage
from runtime.pipeline.policies import MailPolicy, Membership, PolicyTable
from runtime.pipeline.stages.smime_ops import Signer
from smime._keys import PrivateKey, load_certificates, load_private_key
from smime.errors import SMIMEError
from smime.keystore import KeyStore, open_keystore
from smime.trust import TrustStore

log = logging.getLogger("filterlang.stages")

AlertFn = Callable[[str, str], None]


class StageSetupError(Exception):
    """The configuration names something that cannot be loaded (a filter, a key, a file)."""


@define
class StageContext:
    """What the stages share inside one worker process."""

    config: GatewayConfig
    signers: dict[str, Signer]  # certificate name -> key and chain
    decrypt_keys: list[tuple[PrivateKey, x509.Certificate]]
    trust: TrustStore
    resources: Resources
    message_filters: list[CFilter]
    content_filters: dict[str, list[CFilter]]  # "direction:policy" -> its content filters
    tables: dict[str, PolicyTable]  # "incoming" / "outgoing"
    alert: AlertFn = lambda kind, text: None
    services: Services | None = None  # outside services shared by every message (tests give some)
    # Per-message checks and look-ups (SPF, DKIM, DMARC, DNS lists), and DKIM signing.
    providers: Any = None  # runtime.pipeline.stages.providers.Providers
    dkim: Any = None  # runtime.engine.providers.dkimsign.DkimSigner
    _store: KeyStore | None = field(default=None, alias="store")
    _local: threading.local = field(factory=threading.local, init=False)
    _store_down: bool = field(default=False, init=False)  # an outage was alerted, not yet over

    def store_down(self, problem: str) -> None:
        """The key store did not answer: one alert per outage (not one per message waiting)."""
        if not self._store_down:
            self._store_down = True
            self.alert("keystore_unavailable", f"{problem}; mail that needs a key lookup "
                       "waits in the deferred queue and is retried on the retry schedule")

    def store_up(self) -> None:
        """A lookup worked: the outage, if there was one, is over."""
        if self._store_down:
            self._store_down = False
            log.warning("key store available again; deferred mail goes out at its next retry")

    @property
    def store(self) -> KeyStore:
        """The key store. A given one is shared (tests); otherwise each delivery thread opens
        its own connection on first use, after the fork: a store connection is neither
        fork- nor thread-safe."""
        if self._store is not None:
            return self._store
        store: KeyStore | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = open_keystore(self.config.storage.keystore_url)
        return store


def _load_signers(config: GatewayConfig) -> tuple[dict[str, Signer], list[tuple[PrivateKey, x509.Certificate]]]:
    signers: dict[str, Signer] = {}
    for name, c in config.certificates.items():
        where = f"{config.source}: certificates.{name}"
        try:
            certs = load_certificates(c.cert.read_bytes(), where=f"{where}.cert")
            if c.key is None:
                continue
            key = load_private_key(c.key.read_bytes(), where=f"{where}.key")
        except OSError as exc:
            raise StageSetupError(
                f"{where}: cannot read {exc.filename}: {exc.strerror}; create the certificate "
                f"and key with `filterlang cert create --cn DOMAIN --san-email ADDRESS --out PREFIX` "
                f"and point cert / key at PREFIX.crt.pem / PREFIX.key.pem") from None
        except SMIMEError as exc:
            raise StageSetupError(str(exc)) from None
        signers[name] = Signer(key, certs[0], tuple(certs[1:]))
    wanted = config.smime.decryption_certificates
    names = list(signers) if wanted is None else [n for n in wanted if n in signers]
    return signers, [(signers[n].key, signers[n].cert) for n in names]


def _load_filters(paths: tuple[Path, ...], where: str, config: GatewayConfig) -> list[CFilter]:
    from filterlang.check import ResourceNames
    from runtime.config.providers import configured_providers

    # encrypt('P') with a P the configuration does not define could only bounce every message
    # it matches, and a rule whose provider it does not define could only be false: errors
    # here, at `serve --check` and start-up, with the filter's line (a provider listed in
    # allow_unavailable is a warning, in the log).
    names = ResourceNames(encryption_profiles=frozenset(config.encryption_profiles),
                          checked=frozenset({"encryption_profiles"}),
                          services=configured_providers(config),
                          allow_unavailable=config.allow_unavailable)
    try:
        program = load_program(paths, names=names)
    except FilterLoadError as exc:
        raise StageSetupError(f"{where}: a filter file does not compile:\n{exc}") from None
    for warning in program.warnings:
        log.warning("%s", warning)
    return list(program.filters)


def _table(config: GatewayConfig, direction: str) -> tuple[PolicyTable, dict[str, list[CFilter]]]:
    pols = config.incoming_policies if direction == "incoming" else config.outgoing_policies
    filters: dict[str, list[CFilter]] = {}
    table: list[MailPolicy] = []
    default = MailPolicy("Default")
    for p in pols:
        loaded = _load_filters(p.content_filters, f"{config.source}: {direction}_policies.{p.name}",
                              config)
        filters[p.name] = [f for f in loaded if f.content is not None]
        pol = MailPolicy(p.name, Membership(p.senders), Membership(p.recipients))
        if p.name.lower() == "default":
            default = pol
        else:
            table.append(pol)
    return PolicyTable(tuple(table), default), filters


def load_context(config: GatewayConfig, *, store: KeyStore | None = None,
                 alert: AlertFn | None = None) -> StageContext:
    signers, decrypt_keys = _load_signers(config)
    try:
        trust = TrustStore.load(config.smime.trust_anchors, config.smime.crls)
    except (OSError, SMIMEError) as exc:
        raise StageSetupError(f"{config.source}: smime.trust_anchors: {exc}") from None
    resources = Resources(quarantines=set(config.quarantines))
    for name, path in config.dictionaries.items():
        try:
            resources.dictionaries[name] = Dictionary.load(name, path)
        except (OSError, UnicodeDecodeError) as exc:
            raise StageSetupError(f"{config.source}: dictionaries.{name}: cannot read {path}: {exc}") from None
    for name, path in config.text_resources.items():
        try:
            resources.texts[name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StageSetupError(f"{config.source}: text_resources.{name}: cannot read {path}: {exc}") from None
    resources.archive_dir = config.storage.data_dir / "archive"
    mfs = _load_filters(config.message_filters, f"{config.source}: message_filters", config)
    incoming, in_filters = _table(config, "incoming")
    outgoing, out_filters = _table(config, "outgoing")
    content = {f"incoming:{k}": v for k, v in in_filters.items()}
    content |= {f"outgoing:{k}": v for k, v in out_filters.items()}
    ctx = StageContext(config, signers, decrypt_keys, trust, resources,
                       [f for f in mfs if f.content is None], content,
                       {"incoming": incoming, "outgoing": outgoing}, store=store)
    if alert is not None:
        ctx.alert = alert
    from runtime.pipeline.stages.providers import DkimKeyError, load_providers, load_signer

    every = [*ctx.message_filters, *(f for fs in content.values() for f in fs)]
    ctx.providers = load_providers(config, every, alert=lambda kind, text: ctx.alert(kind, text))
    try:
        ctx.dkim = load_signer(config)
    except DkimKeyError as exc:
        raise StageSetupError(str(exc)) from None
    return ctx


def build_stages(config: GatewayConfig, *, store: KeyStore | None = None,
                 alert: AlertFn | None = None) -> dict[str, Stage]:
    """Every pipeline slot filled from `config` (raises `StageSetupError`)."""
    return stages_of(load_context(config, store=store, alert=alert))


def stages_of(ctx: StageContext) -> dict[str, Stage]:
    """Every pipeline slot over one loaded context (the gateway's, or `filterlang test`'s)."""
    from runtime.pipeline.stages.filters import ContentFilters, MailPolicies, MessageFilters
    from runtime.pipeline.stages.flow import MailFlow
    from runtime.pipeline.stages.scanning import anti_spam, anti_virus
    from runtime.pipeline.stages.smime_in import SmimeInbound
    from runtime.pipeline.stages.smime_out import SmimeOutbound

    return {
        "mail_flow_policy": MailFlow(ctx),
        "smime_inbound": SmimeInbound(ctx),
        "message_filters": MessageFilters(ctx),
        "mail_policies": MailPolicies(ctx),
        "anti_spam": anti_spam(ctx),
        "anti_virus": anti_virus(ctx),
        "content_filters": ContentFilters(ctx),
        "smime_outbound": SmimeOutbound(ctx),
    }
