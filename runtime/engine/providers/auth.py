"""Inbound email authentication, once per message: SPF (pyspf) for MAIL FROM and HELO, DKIM
and ARC (dkimpy), DMARC (authheaders, on the SPF and DKIM results), and the one
Authentication-Results field (RFC 8601) that records them under the gateway's authserv-id.

The libraries ask for DNS synchronously, so `Authenticator.check` runs in a thread and each
query goes to the gateway's one resolver (`Resolver.lookup_sync`): one cache, one set of name
servers, one timeout. The result, `AuthVerdict`, is the provider the SPF, DKIM and DMARC rules
ask (`runtime.engine.services.AuthProvider`).
"""

from __future__ import annotations

import re
import threading
from typing import Any

import authheaders
import authheaders.dmarc_lookup
import dkim
import spf
from attrs import define, frozen
from authres import DKIMAuthenticationResult, SPFAuthenticationResult
from publicsuffix2 import PublicSuffixList

from runtime.engine.addresses import address_list
from runtime.engine.providers.resolver import Lookup, Resolver

# The reference's spelling of SPF results (6.9): pyspf's lower-case result -> rule value.
SPF_NAMES = {"pass": "Pass", "fail": "Fail", "softfail": "SoftFail", "neutral": "Neutral",
             "none": "None", "temperror": "TempError", "permerror": "PermError"}
DMARC_NAMES = {"pass": "Pass", "fail": "Fail", "none": "None", "temperror": "TempError",
               "permerror": "PermError"}
# The project's DKIM values (reference 6.9) ranked: the message's result is the best signature's.
DKIM_RANK = ("pass", "temperror", "hardfail", "permerror", "neutral", "none")


# authheaders finds the organisational domain by parsing its whole public suffix list again for
# every call (0.2 s of CPU, several calls per message). The same list, parsed once: the same
# answers, and DMARC costs what its DNS look-ups cost.
def _load_psl() -> Any:
    import importlib.resources

    ref = importlib.resources.files("authheaders") / "public_suffix_list.txt"
    with ref.open(encoding="utf-8") as fh:
        return PublicSuffixList(fh)


_PSL = _load_psl()


def org_domain(domain: str) -> str:
    """The organisational domain (RFC 7489 3.2) of `domain`, by authheaders' public suffix list.

    publicsuffix2 answers the bare TLD for a TLD the list does not hold ("auth.test" -> "test"),
    which would align every domain under it; the list's own algorithm applies the default rule
    "*" there (the TLD is the suffix), so the organisational domain keeps one label more."""
    found = str(_PSL.get_public_suffix(domain))
    labels = domain.rstrip(".").lower().split(".")
    if "." not in found and len(labels) >= 2:
        return ".".join(labels[-2:])
    return found


authheaders.get_org_domain = org_domain
authheaders.dmarc_lookup.get_org_domain = org_domain


class _DnsTemporary(Exception):
    """A DNS look-up failed temporarily (SERVFAIL, timeout): the check's result is temperror."""


# pyspf asks `spf.DNSLookup` (a module-level hook) for every query. Each checking thread sets
# its resolver here; a thread without one (nothing of ours) keeps pyspf's own look-up.
_local = threading.local()
_pyspf_lookup = spf.DNSLookup


def _spf_dns(name: str, qtype: str, *args: Any, **kwargs: Any) -> list[Any]:
    resolver: Resolver | None = getattr(_local, "resolver", None)
    if resolver is None:
        return list(_pyspf_lookup(name, qtype, *args, **kwargs))
    found = resolver.lookup_sync(name, qtype)
    if found.status == "temperror":
        raise spf.TempError(f"DNS {name} {qtype}: {found.problem}")
    out: list[Any] = []
    for r in found.records:
        if qtype in ("A", "AAAA"):
            out.append(((name, qtype), r.address))
        elif qtype == "MX":
            out.append(((name, qtype), (r.preference, r.exchange.to_text(True))))
        elif qtype == "PTR":
            out.append(((name, qtype), r.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            out.append(((name, qtype), list(r.strings)))
    return out


spf.DNSLookup = _spf_dns


@frozen
class SpfResult:
    identity: str  # "mailfrom" or "helo"
    result: str  # pyspf's: pass, fail, softfail, neutral, none, temperror, permerror
    domain: str  # the domain checked
    explanation: str = ""


@frozen
class DkimResult:
    result: str  # pass, hardfail, permerror, temperror, neutral (DKIM_RANK)
    domain: str = ""  # d=
    selector: str = ""  # s=
    algorithm: str = ""  # a=
    reason: str = ""


@frozen
class DmarcResult:
    result: str  # pass, fail, none, temperror, permerror
    policy: str = ""  # the policy that applies to the From domain: none, quarantine, reject
    domain: str = ""  # the From domain
    reason: str = ""


@define
class AuthVerdict:
    """What the checks found for one message; the SPF/DKIM/DMARC rules' provider."""

    spf_mailfrom: SpfResult | None = None
    spf_helo: SpfResult | None = None
    dkim_results: tuple[DkimResult, ...] = ()
    dmarc_result: DmarcResult | None = None
    arc_result: str | None = None  # pass, fail, none; None: not checked

    def spf(self, identity: str) -> str:
        """The reference's SPF value for `identity` ("mailfrom", "helo", "pra"; "" combined:
        MAIL FROM's, which is the HELO identity's when the reverse path is empty)."""
        ident = identity.strip().lower()
        if ident == "helo":
            found = self.spf_helo
        elif ident in ("", "mailfrom"):
            found = self.spf_mailfrom or (self.spf_helo if ident == "" else None)
        else:  # PRA (Sender ID) is not checked: RFC 4406 is historic
            found = None
        return SPF_NAMES.get(found.result, "None") if found is not None else "None"

    def dkim(self) -> str:
        if not self.dkim_results:
            return "none"
        return min((d.result for d in self.dkim_results), key=DKIM_RANK.index)

    def dmarc(self) -> str:
        r = self.dmarc_result
        return DMARC_NAMES.get(r.result, "None") if r is not None else "None"

    def dmarc_policy(self) -> str:
        r = self.dmarc_result
        return r.policy if r is not None and r.policy else "none"

    def header_parts(self, authserv_id: str) -> list[str]:
        """The Authentication-Results value as folding parts: `authserv-id;` then one
        `method=result ...` per check (RFC 8601 2.2), `none` when nothing was checked."""
        results: list[str] = []
        for s in (self.spf_mailfrom, self.spf_helo):
            if s is not None:
                prop = "smtp.mailfrom" if s.identity == "mailfrom" else "smtp.helo"
                results.append(f"spf={s.result} {prop}={_pvalue(s.domain)}")
        for d in self.dkim_results:
            value = "fail" if d.result == "hardfail" else d.result
            text = f"dkim={value}"
            if d.reason:
                text += f" reason={_pvalue(d.reason)}"
            if d.domain:
                text += f" header.d={_pvalue(d.domain)} header.s={_pvalue(d.selector)}"
            results.append(text)
        if self.dmarc_result is not None:
            m = self.dmarc_result
            text = f"dmarc={m.result}"
            if m.reason:
                text += f" reason={_pvalue(m.reason)}"
            if m.domain:
                text += f" header.from={_pvalue(m.domain)}"
            if m.policy:
                text += f" policy.dmarc={_pvalue(m.policy)}"
            results.append(text)
        if self.arc_result is not None:
            results.append(f"arc={self.arc_result}")
        if not results:
            return [f"{authserv_id}; none"]
        return [f"{authserv_id};"] + [r + ";" for r in results[:-1]] + results[-1:]


_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@]+")


def _pvalue(text: str) -> str:
    """An RFC 8601 pvalue: a token as it is, anything else as a quoted string."""
    if _TOKEN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"')[:200] + '"'


@frozen
class AuthSettings:
    spf: bool = True
    dkim: bool = True
    dmarc: bool = True
    arc: bool = True


class Authenticator:
    """Runs the checks of one message in the calling thread (not the resolver's loop)."""

    def __init__(self, resolver: Resolver, settings: AuthSettings = AuthSettings()) -> None:
        self.resolver = resolver
        self.settings = settings

    def check(self, ip: str, helo: str, mail_from: str, data: bytes) -> AuthVerdict:
        _local.resolver = self.resolver
        try:
            v = AuthVerdict()
            if self.settings.spf or self.settings.dmarc:
                v.spf_helo = self._spf(ip, "", helo) if _is_domain(helo) else None
                if mail_from:
                    v.spf_mailfrom = self._spf(ip, mail_from, helo)
                elif v.spf_helo is not None:  # RFC 7208 2.4: the HELO identity stands in
                    v.spf_mailfrom = SpfResult("mailfrom", v.spf_helo.result,
                                               f"postmaster@{helo}", v.spf_helo.explanation)
            if self.settings.dkim or self.settings.dmarc:
                v.dkim_results = self._dkim(data)
            if self.settings.dmarc:
                v.dmarc_result = self._dmarc(data, v, mail_from or f"postmaster@{helo}")
            if self.settings.arc:
                v.arc_result = self._arc(data)
            if not self.settings.spf:
                v.spf_helo = v.spf_mailfrom = None
            if not self.settings.dkim:
                v.dkim_results = ()
            return v
        finally:
            _local.resolver = None

    # --- SPF -------------------------------------------------------------------------------
    def _spf(self, ip: str, sender: str, helo: str) -> SpfResult:
        ident = "mailfrom" if sender else "helo"
        domain = sender.rpartition("@")[2] if sender else helo
        try:
            q = spf.query(i=ip, s=sender, h=helo, timeout=self.resolver.timeout * 4)
            result, _code, explanation = q.check()
        except (spf.TempError, _DnsTemporary) as exc:
            return SpfResult(ident, "temperror", domain, str(exc))
        except ValueError as exc:  # an address pyspf cannot read: no check possible
            return SpfResult(ident, "none", domain, str(exc))
        res = str(result).lower()
        return SpfResult(ident, res if res in SPF_NAMES else "permerror", domain, explanation)

    # --- DKIM ------------------------------------------------------------------------------
    def _txt(self, state: dict[str, Any]) -> Any:
        """dkimpy's dnsfunc: the TXT record of a key name, noting what happened in `state`."""
        def txt(name: bytes | str, timeout: float = 5) -> bytes | None:
            text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
            found: Lookup = self.resolver.lookup_sync(text, "TXT")
            state["asked"] = True
            if found.status == "temperror":
                state["temp"] = found.problem
                raise dkim.DnsTimeoutError(f"{text}: {found.problem}")
            texts = [b"".join(r.strings) for r in found.records if hasattr(r, "strings")]
            state["key"] = texts[0] if texts else None
            return state["key"]
        return txt

    def _dkim(self, data: bytes) -> tuple[DkimResult, ...]:
        try:
            d = dkim.DKIM(data)
        except (dkim.MessageFormatError, *_DKIMPY_INPUT_ERRORS) as exc:
            return (DkimResult("permerror", reason=f"message format: {exc}"[:120]),)
        sigs = [v for k, v in d.headers if k.lower() == b"dkim-signature"]
        out = []
        for idx, raw in enumerate(sigs[:8]):  # a bound: each costs DNS and a public-key check
            try:
                tags = dkim.parse_tag_value(raw)
            except dkim.InvalidTagValueList:
                tags = {}
            domain = tags.get(b"d", b"").decode("ascii", "replace").lower()
            selector = tags.get(b"s", b"").decode("ascii", "replace")
            algorithm = tags.get(b"a", b"").decode("ascii", "replace")
            state: dict[str, Any] = {}
            try:
                ok = d.verify(idx, dnsfunc=self._txt(state))
            except (dkim.DKIMException, *_DKIMPY_INPUT_ERRORS) as exc:
                ok, state["error"] = False, str(exc)
            if ok:
                result, reason = "pass", ""
            elif "temp" in state:
                result, reason = "temperror", "key look-up failed"
            elif not state.get("asked"):
                result, reason = "permerror", "signature header invalid"
            elif not _usable_key(state.get("key")):
                result, reason = "permerror", "no key" if not state.get("key") else "key revoked or invalid"
            else:
                result, reason = "hardfail", "signature did not verify"
            out.append(DkimResult(result, domain, selector, algorithm, reason))
        return tuple(out)

    # --- ARC -------------------------------------------------------------------------------
    def _arc(self, data: bytes) -> str:
        if b"arc-seal:" not in data[: data.find(b"\r\n\r\n") + 4 or len(data)].lower():
            return "none"
        try:
            cv, _results, _comment = dkim.arc_verify(data, dnsfunc=self._txt({}))
        except (dkim.DKIMException, *_DKIMPY_INPUT_ERRORS):
            return "fail"
        return cv.decode("ascii", "replace") if isinstance(cv, bytes) else str(cv or "fail")

    # --- DMARC -----------------------------------------------------------------------------
    def _dmarc_txt(self, name: str) -> str | None:
        """authheaders' dnsfunc: the one DMARC record at `name` (as text), None when none."""
        found = self.resolver.lookup_sync(name, "TXT")
        if found.status == "temperror":
            raise _DnsTemporary(f"{name}: {found.problem}")
        records = [t for t in found.texts if t.startswith("v=DMARC1")]
        if len(records) != 1:  # RFC 7489 6.6.3: none, or several, is no policy
            return None
        return records[0]

    def _dmarc(self, data: bytes, v: AuthVerdict, mail_from: str) -> DmarcResult:
        domains = _from_domains(data)
        if len(domains) != 1:
            reason = "no From domain" if not domains else "several From domains"
            return DmarcResult("permerror", reason=reason)
        domain = domains[0]
        spf_ok = v.spf_mailfrom is not None and v.spf_mailfrom.result == "pass"
        passing: list[DkimResult | None] = [d for d in v.dkim_results if d.result == "pass"]
        passing = passing or [None]
        try:
            best: tuple[str, str, str, str] | None = None
            for sig in passing:  # aligned if any passing signature aligns (RFC 7489 4.2)
                spf_arg = (SPFAuthenticationResult(result="pass", smtp_mailfrom=mail_from)
                           if spf_ok else None)
                dkim_arg = (DKIMAuthenticationResult(result="pass", header_d=sig.domain)
                            if sig is not None else None)
                got = authheaders.dmarc_per_from(domain, spf_arg, dkim_arg,
                                                 dnsfunc=self._dmarc_txt)
                best = (str(got[0]), str(got[1]), str(got[2]), str(got[3]))
                if best[0] == "pass":
                    break
        except _DnsTemporary as exc:
            return DmarcResult("temperror", domain=domain, reason=str(exc)[:120])
        except Exception as exc:  # authheaders' DMARCException and parse errors: a bad record
            return DmarcResult("permerror", domain=domain, reason=f"{type(exc).__name__}")
        assert best is not None
        result, _comment, _dom, policy = best
        return DmarcResult(result if result in DMARC_NAMES else "permerror",
                           policy.lower() if result != "none" else "", domain)


# What dkimpy raises besides its own exceptions on input it cannot read (found by mutating
# signed messages): binascii.Error (a ValueError) for a b= or bh= that is not base64,
# IndexError for a header block that begins with white space or a signature with an empty
# i=. Escaping the check, they made an outsider's message wait for retries; they are the
# signature's (or the message's) permanent failure.
_DKIMPY_INPUT_ERRORS = (ValueError, IndexError, KeyError, TypeError)


def _usable_key(key: bytes | None) -> bool:
    if not key:
        return False
    try:
        dkim.evaluate_pk(b"key", key)
    except Exception:  # dkimpy's KeyFormatError and the crypto parsers' errors: no usable key
        return False
    return True


def _is_domain(helo: str) -> bool:
    return bool(helo) and "." in helo and not helo.startswith("[") and not helo.replace(".", "").isdigit()


_FROM = re.compile(rb"^from[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def _from_domains(data: bytes) -> list[str]:
    """The distinct domains of the From field(s) in the header block (RFC 7489 6.6.1)."""
    end = data.find(b"\r\n\r\n")
    head = data[: end if end >= 0 else len(data)]
    values = [m.group(1).decode("utf-8", "replace").replace("\r\n", "") for m in _FROM.finditer(head)]
    domains: list[str] = []
    for _name, addr in address_list(values):
        dom = addr.rpartition("@")[2].strip().rstrip(".").lower()
        if dom and "@" in addr and dom not in domains:
            domains.append(dom)
    return domains


# --- Authentication-Results fields that claim our authserv-id ------------------------------

_AR_FIELD = re.compile(rb"^authentication-results[ \t]*:", re.IGNORECASE)
_COMMENT = re.compile(r"\([^()]*\)")


def _authserv_id(value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    for _ in range(3):  # comments may nest a little (RFC 5322 CFWS)
        text = _COMMENT.sub(" ", text)
    return text.split(";", 1)[0].strip().strip('"').lower()


def strip_ours(data: bytes, authserv_id: str) -> tuple[bytes, int]:
    """Remove each arriving Authentication-Results field claiming `authserv_id` (RFC 8601
    5: a forged one would pass for our own verdict); the message and how many went."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or b"authentication-results" not in data[:end].lower():
        return data, 0
    head, rest = data[: end + 2], data[end + 2 :]
    lines = head.split(b"\r\n")[:-1]
    fields: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    ours = authserv_id.lower()
    kept, removed = [], 0
    for f in fields:
        m = _AR_FIELD.match(f[0])
        if m is not None and _authserv_id(b" ".join([f[0][m.end():], *f[1:]])) == ours:
            removed += 1
            continue
        kept.append(b"\r\n".join(f))
    if not removed:
        return data, 0
    return b"\r\n".join(kept) + b"\r\n" + rest, removed
