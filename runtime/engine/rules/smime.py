"""S/MIME and signature rules (reference 6.8, 12.7): gateway state, CMS structure, certificates."""

from __future__ import annotations

import re

from asn1crypto import cms

from filterlang.compile import CRule
from runtime.engine import rx
from runtime.engine.context import MessageContext
from runtime.engine.mimewalk import header_param
from runtime.engine.rules.common import RuleResult, arg, compare_regex, operand

_PKCS7 = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_SIG = ("application/pkcs7-signature", "application/x-pkcs7-signature")


def smime_gateway_message(ctx: MessageContext, t: CRule) -> RuleResult:
    return RuleResult(ctx.smime.processed, f"S/MIME processed = {ctx.smime.processed}")


def smime_gateway_verified(ctx: MessageContext, t: CRule) -> RuleResult:
    ok = ctx.smime.processed and ctx.smime.verified
    return RuleResult(ok, f"S/MIME verified = {ok}")


def smime_gateway_unauthenticated(ctx: MessageContext, t: CRule) -> RuleResult:
    hit = ctx.smime.processed and ctx.smime.unauthenticated
    return RuleResult(hit, f"S/MIME unauthenticated decryption = {hit}")


def encrypted(ctx: MessageContext, t: CRule) -> RuleResult:
    top = ctx.headers
    ctype = top.get_content_type()
    if ctype in _PKCS7:
        smime_type = str(header_param(top, "smime-type") or "").lower()
        hit = smime_type in ("enveloped-data", "authenveloped-data") or (
            smime_type == "" and _content_type_of(ctx) in ("enveloped_data", "authenticated_enveloped_data"))
        return RuleResult(hit, f"top-level {ctype} {smime_type or ''}".strip())
    if ctype == "multipart/encrypted":
        return RuleResult(True, "multipart/encrypted")
    return RuleResult(False, f"top-level {ctype}")


def _content_type_of(ctx: MessageContext) -> str:
    from runtime.engine.mimewalk import decode_transfer

    try:
        return str(cms.ContentInfo.load(decode_transfer(ctx.message))["content_type"].native)
    except Exception:
        return ""


def _signed_datas(ctx: MessageContext) -> list[cms.SignedData]:
    out = []
    for part in ctx.message.walk():
        if part.get_content_type() in _PKCS7 + _SIG:
            from runtime.engine.mimewalk import decode_transfer

            try:
                info = cms.ContentInfo.load(decode_transfer(part))
                if info["content_type"].native == "signed_data":
                    sd = info["content"]
                    _ = sd.native  # force a full parse: structural validity
                    out.append(sd)
            except Exception:
                ctx.defects.append("unparseable CMS object")
    return out


def signed(ctx: MessageContext, t: CRule) -> RuleResult:
    n = len(_signed_datas(ctx))
    return RuleResult(n > 0, f"{n} CMS SignedData object(s)")


def _cert_values(ctx: MessageContext, which: str) -> list[str]:
    values: list[str] = []
    for sd in _signed_datas(ctx):
        for cert in sd["certificates"]:
            c = cert.chosen
            if which == "issuer":
                values.append(",".join(
                    f"{k}={v}" for k, v in _rdn_pairs(c.issuer)))
            else:
                san = c.subject_alt_name_value
                for gn in san or []:
                    if gn.name == "rfc822_name":
                        values.append(str(gn.native))
    if not values:
        # the gateway may have removed the signature after verifying it (reference 12.7)
        values = list(ctx.smime.issuers if which == "issuer" else ctx.smime.signers)
    return values


_DN_SPECIAL = re.compile(r'[,+"\\<>;=]')
_SHORT = {"country_name": "C", "state_or_province_name": "ST", "locality_name": "L",
          "organization_name": "O", "organizational_unit_name": "OU", "common_name": "CN",
          "email_address": "emailAddress"}


def _rdn_pairs(name: object) -> list[tuple[str, str]]:
    pairs = []
    for rdn in name.chosen:  # type: ignore[attr-defined]
        for atv in rdn:
            key = _SHORT.get(atv["type"].native, atv["type"].dotted)
            # RFC 4514 escapes in one pass, so an inserted backslash is never escaped again
            val = _DN_SPECIAL.sub(r"\\\g<0>", str(atv["value"].native))
            pairs.append((key, val))
    return pairs


def signed_certificate(ctx: MessageContext, t: CRule) -> RuleResult:
    which = str(arg(t, 0, "signer")).lower()
    values = _cert_values(ctx, which)
    if t.comparator is None:
        return RuleResult(bool(values), f"{which}: {', '.join(values) or 'none'}")
    if which == "issuer":
        # the guide writes the state as S=; accept it by normalising the pattern
        src = rx.source(operand(t)).replace("S=", "ST=").replace("SST=", "ST=")
        return compare_regex(t, values, f"certificate {which}", missing_ne=False,
                             pattern=rx.recompile(operand(t), src))
    return compare_regex(t, values, f"certificate {which}", missing_ne=False)
