"""Every rule of reference 6.2 by canonical name, with its static cost class (reference 3.4)."""

from __future__ import annotations

from filterlang.ast import RuleTest
from runtime.context import MessageContext
from runtime.rules import attachments, content, dictionaries, envelope, headers, misc, smime
from runtime.rules.common import RuleError, RuleFn, RuleResult, operand
from runtime.services import need

__all__ = ["COST", "RULES", "RuleError", "RuleResult", "canonical", "evaluate"]


def _provider_rule(service: str) -> RuleFn:
    def run(ctx: MessageContext, t: RuleTest) -> RuleResult:
        provider = need(ctx.services, service)
        args = tuple(a.value for a in (t.args or ()))  # type: ignore[union-attr]
        verdict = provider.verdict(t.name, args, ctx.raw)  # type: ignore[attr-defined]
        if t.comparator is None:
            return RuleResult(bool(verdict), f"{service} verdict {verdict}")
        hit = str(verdict).lower() == str(operand(t)).lower()
        return RuleResult(hit if t.comparator == "==" else not hit, f"{service} verdict {verdict}")

    return run


# cost classes: 0 envelope/connection, 1 headers, 2 size/count, 3 services, 4 body/attachments
RULES: dict[str, tuple[RuleFn, int]] = {
    "mail-from": (envelope.mail_from, 0),
    "mail-from-group": (envelope.mail_from_group, 3),
    "mail-from-dictionary-match": (dictionaries.mail_from_dictionary_match, 0),
    "rcpt-to": (envelope.rcpt_to, 0),
    "rcpt-to-group": (envelope.rcpt_to_group, 3),
    "rcpt-to-dictionary-match": (dictionaries.rcpt_to_dictionary_match, 0),
    "rcpt-count": (envelope.rcpt_count, 0),
    "remote-ip": (envelope.remote_ip, 0),
    "recv-listener": (envelope.recv_listener, 0),
    "recv-int": (envelope.recv_int, 0),
    "sendergroup": (envelope.sendergroup, 0),
    "reputation": (envelope.reputation, 3),
    "no-reputation": (envelope.no_reputation, 3),
    "dnslist": (envelope.dnslist, 3),
    "smtp-auth-id-matches": (envelope.smtp_auth_id_matches, 1),
    "spf-status": (envelope.spf_status, 3),
    "spf-passed": (envelope.spf_passed, 3),
    "dkim-authentication": (envelope.dkim_authentication, 3),
    "workqueue-count": (envelope.workqueue_count, 2),
    "subject": (headers.subject, 1),
    "subject-dictionary-match": (dictionaries.subject_dictionary_match, 1),
    "header": (headers.header, 1),
    "header-dictionary-match": (dictionaries.header_dictionary_match, 1),
    "addr-count": (headers.addr_count, 1),
    "header-repeats": (headers.header_repeats, 9),  # side effect: always evaluated last
    "malformed-header": (headers.malformed_header, 1),
    "duplicate-boundaries": (headers.duplicate_boundaries, 4),
    "body-size": (misc.body_size, 2),
    "date": (misc.date, 0),
    "random": (misc.random, 0),
    "true": (misc.true, 0),
    "valid": (misc.valid, 4),
    "message-language": (_provider_rule("language"), 3),
    "body-contains": (content.body_contains, 4),
    "only-body-contains": (content.only_body_contains, 4),
    "attachment-contains": (content.attachment_contains, 4),
    "every-attachment-contains": (content.every_attachment_contains, 4),
    "attachment-binary-contains": (content.attachment_binary_contains, 4),
    "encrypted": (smime.encrypted, 1),
    "dictionary-match": (dictionaries.dictionary_match, 4),
    "body-dictionary-match": (dictionaries.body_dictionary_match, 4),
    "attachment-dictionary-match": (dictionaries.attachment_dictionary_match, 4),
    "attachment-filename-dictionary-match": (dictionaries.attachment_filename_dictionary_match, 4),
    "attachment-filename": (attachments.attachment_filename, 4),
    "attachment-type": (attachments.attachment_type, 4),
    "attachment-filetype": (attachments.attachment_filetype, 4),
    "attachment-mimetype": (attachments.attachment_mimetype, 4),
    "attachment-size": (attachments.attachment_size, 4),
    "attachment-protected": (attachments.attachment_protected, 4),
    "attachment-unprotected": (attachments.attachment_unprotected, 4),
    "attachment-corrupt": (attachments.attachment_corrupt, 4),
    "image-verdict": (_provider_rule("image"), 3),
    "smime-gateway-message": (smime.smime_gateway_message, 0),
    "smime-gateway-verified": (smime.smime_gateway_verified, 0),
    "signed": (smime.signed, 4),
    "signed-certificate": (smime.signed_certificate, 4),
    "url-reputation": (_provider_rule("url"), 3),
    "url-no-reputation": (_provider_rule("url"), 3),
    "url-category": (_provider_rule("url"), 3),
    "forged-email-detection": (_provider_rule("forged"), 3),
}
COST = {name: cost for name, (_, cost) in RULES.items()}


def canonical(name: str) -> str:
    """Legacy spellings use ``_`` (``duplicate_boundaries``, ``only_body_contains``)."""
    return name.lower().replace("_", "-")


def evaluate(ctx: MessageContext, test: RuleTest) -> RuleResult:
    entry = RULES.get(canonical(test.name))
    if entry is None:
        raise RuleError(f"unknown rule {test.name!r}")
    return entry[0](ctx, test)


