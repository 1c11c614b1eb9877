"""Rule dispatch: every row of the one signature table (filterlang.builtins) to its implementation.

There is no list of rule names here. A rule row is implemented by the function of the same name
(``-`` -> ``_``) in one of the rule modules; a row without one must depend on an outside
service whose provider gives a verdict (reference 6.1). Import fails if a row has neither, so a
rule added to the table cannot silently evaluate to nothing.
"""

from __future__ import annotations

from types import ModuleType

from filterlang import builtins as b
from filterlang.compile import CRule
from runtime.engine.context import MessageContext
from runtime.engine.rules import (
    attachments,
    content,
    dictionaries,
    envelope,
    headers,
    misc,
    scanning,
    smime,
)
from runtime.engine.rules.common import RuleError, RuleFn, RuleResult, operand
from runtime.engine.services import need

__all__ = ["IMPLEMENTATIONS", "RuleError", "RuleResult", "evaluate"]

_MODULES: tuple[ModuleType, ...] = (envelope, headers, misc, content, dictionaries, attachments,
                                    smime, scanning)

# Dependency codes of reference 6.1 whose provider answers with one verdict (services.ScoreProvider).
_VERDICT_SERVICES = {"LANG": "language", "IMG": "image", "URL": "url", "FED": "forged"}


def _provider_rule(service: str) -> RuleFn:
    def run(ctx: MessageContext, t: CRule) -> RuleResult:
        provider = need(ctx.services, service)
        verdict = provider.verdict(t.sig.name, t.args, ctx.raw)  # type: ignore[attr-defined]
        if t.comparator is None:
            return RuleResult(bool(verdict), f"{service} verdict {verdict}")
        hit = str(verdict).lower() == str(operand(t)).lower()
        return RuleResult(hit if t.comparator == "==" else not hit, f"{service} verdict {verdict}")

    return run


def _implementation(sig: b.RuleSig) -> RuleFn:
    fname = sig.name.replace("-", "_")
    for module in _MODULES:
        fn = getattr(module, fname, None)
        if callable(fn):
            return fn
    for code in (sig.dep or "").split("+"):
        if code in _VERDICT_SERVICES:
            return _provider_rule(_VERDICT_SERVICES[code])
    raise ImportError(f"rule {sig.name!r} of the signature table has no implementation")


#: Row name -> implementation, built from the signature table at import (keyed by the name:
#: hashing a frozen RuleSig on every evaluation costs more than the rule itself).
IMPLEMENTATIONS: dict[str, RuleFn] = {sig.name: _implementation(sig) for sig in b.RULES}


def evaluate(ctx: MessageContext, test: CRule) -> RuleResult:
    return IMPLEMENTATIONS[test.sig.name](ctx, test)
