"""The one signature table of every rule (reference 6.2) and action (7.1), and the variables (8.2).

The checker, the compiler, the docs generator and the runtime all read this table; nothing is
accepted without a row here. Lookup is case-insensitive and treats `_` and `-` as equivalent
(reference 2.5), after a verbatim try.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from types import MappingProxyType

from attrs import frozen


class T(enum.StrEnum):
    """Argument and operand types."""

    REGEX = "regex"
    STRING = "string"
    NAME = "name"
    INT = "int"
    DECIMAL = "decimal"
    SIZE = "size"
    DATE = "date"
    IP_SPEC = "ip-spec"
    LIST = "list"
    EMAIL = "email"
    RETURN_PATH = "return-path"  # one address, or '' for the null sender
    HEADER_NAME = "header-name"
    TEMPLATE = "template"
    PROFILE = "profile"
    ENCRYPTION_PROFILE = "encryption-profile"  # [encryption_profiles.NAME], not a sending profile
    QUARANTINE = "quarantine"
    DICTIONARY = "dictionary"
    TEXT_RESOURCE = "text-resource"
    GROUP = "group"
    LISTENER = "listener"
    INTERFACE = "interface"
    MIME_PATTERN = "mime-pattern"
    HOST = "host"
    FLAG01 = "flag01"


class Form(enum.StrEnum):
    """How a rule may be written (reference 3.5)."""

    COMPARISON = "comparison"  # an operand and a comparator are required
    PREDICATE = "predicate"  # no comparator allowed
    EITHER = "either"  # predicate, or with a comparison


class Cost(enum.IntEnum):
    """Static evaluation cost order of reference 3.4; header-repeats always runs last."""

    ENVELOPE = 0
    HEADER = 1
    SIZE = 2
    SERVICE = 3
    SCAN = 4
    LAST = 5


class Repeat(enum.StrEnum):
    """Override class of a non-final action (reference 4.5)."""

    SLOT = "slot"
    FLAG = "flag"
    LIST = "list"


EQ_NE: tuple[str, ...] = ("==", "!=")
ALL_SIX: tuple[str, ...] = ("==", "!=", "<", "<=", ">", ">=")


@frozen
class Param:
    """One positional parameter."""

    name: str
    type: T
    required: bool = True
    expands_vars: bool = False


@frozen
class RuleSig:
    """One rule row of reference 6.2."""

    number: int
    name: str
    params: tuple[Param, ...]
    form: Form
    operand: T | None
    comparators: tuple[str, ...]
    dep: str | None
    cost: Cost
    cf: str | None
    description: str
    example: str
    multi_valued: bool = False
    legacy: tuple[str, ...] = ()


@frozen
class ActionSig:
    """One action row of reference 7.1."""

    number: int
    name: str
    params: tuple[Param, ...]
    final: bool
    repeat: Repeat | None
    cf: str | None
    description: str
    example: str
    legacy: tuple[str, ...] = ()


def _p(name: str, typ: T, *, opt: bool = False, var: bool = False) -> Param:
    return Param(name, typ, not opt, var)


_CMP = Form.COMPARISON
_PRED = Form.PREDICATE
_EITHER = Form.EITHER
_C = Cost


def _r(
    n: int, name: str, params: tuple[Param, ...], form: Form, operand: T | None,
    cmps: tuple[str, ...], dep: str | None, cost: Cost, cf: str | None, desc: str, ex: str,
    *, multi: bool = False, legacy: tuple[str, ...] = (),
) -> RuleSig:
    return RuleSig(n, name, params, form, operand, cmps, dep, cost, cf, desc, ex, multi, legacy)


_DICT_N = (_p("dictionary", T.DICTIONARY), _p("threshold", T.INT, opt=True))
_RE_N = (_p("pattern", T.REGEX), _p("threshold", T.INT, opt=True))

# fmt: off
RULES: tuple[RuleSig, ...] = (
    _r(1, "mail-from", (), _CMP, T.REGEX, EQ_NE, None, _C.ENVELOPE, "Envelope Sender",
       "envelope sender (MAIL FROM) matches; case-insensitive", "mail-from == '@example\\\\.com$'"),
    _r(2, "mail-from-group", (), _CMP, T.GROUP, EQ_NE, "LDAP", _C.SERVICE,
       "Envelope Sender → LDAP group", "sender is in the LDAP group", "mail-from-group == 'Staff'"),
    _r(3, "mail-from-dictionary-match", _DICT_N, _PRED, None, (), "CFG", _C.ENVELOPE,
       "Envelope Sender → dictionary", "envelope sender matches a dictionary term",
       "mail-from-dictionary-match('Blocked')"),
    _r(4, "rcpt-to", (), _CMP, T.REGEX, EQ_NE, None, _C.ENVELOPE, "Envelope Recipient",
       "any envelope recipient matches; case-insensitive", "rcpt-to == '@partner\\\\.example$'",
       multi=True),
    _r(5, "rcpt-to-group", (), _CMP, T.GROUP, EQ_NE, "LDAP", _C.SERVICE,
       "Envelope Recipient → LDAP group", "any recipient is in the LDAP group",
       "rcpt-to-group == 'Executives'", multi=True),
    _r(6, "rcpt-to-dictionary-match", _DICT_N, _PRED, None, (), "CFG", _C.ENVELOPE,
       "Envelope Recipient → dictionary", "any recipient matches a dictionary term",
       "rcpt-to-dictionary-match('VIPs')", multi=True),
    _r(7, "rcpt-count", (), _CMP, T.INT, ALL_SIX, None, _C.ENVELOPE, None,
       "number of envelope recipients", "rcpt-count > 100"),
    _r(8, "remote-ip", (), _CMP, T.IP_SPEC, EQ_NE, None, _C.ENVELOPE, "Remote IP/Hostname",
       "connecting host IP is within the spec", "remote-ip == '10.1.1.0/24'"),
    _r(9, "recv-listener", (), _CMP, T.LISTENER, EQ_NE, "CFG", _C.ENVELOPE, "Receiving Listener",
       "listener that received the message", "recv-listener == 'InboundMail'"),
    _r(10, "recv-int", (), _CMP, T.INTERFACE, EQ_NE, "CFG", _C.ENVELOPE, None,
       "IP interface that received the message", "recv-int == 'Data1'"),
    _r(11, "sendergroup", (), _CMP, T.REGEX, EQ_NE, "CFG", _C.ENVELOPE, None,
       "name of the HAT sender group the connection matched", "sendergroup == 'TRUSTED'"),
    _r(12, "reputation", (), _CMP, T.DECIMAL, ALL_SIX, "REP", _C.SERVICE, "Reputation Score",
       "sender IP reputation score (-10 to 10); false when there is no score",
       "reputation < -7.5"),
    _r(13, "no-reputation", (), _PRED, None, (), "REP", _C.SERVICE, "Reputation Score → none",
       "no reputation score is available", "no-reputation"),
    _r(14, "dnslist", (_p("zone", T.STRING),), _EITHER, T.STRING, EQ_NE, "DNS", _C.SERVICE, None,
       "DNS list returned an answer (any, or the given one) for the sender IP",
       "dnslist('zen.example.org') == '127.0.0.2'", multi=True),
    _r(15, "smtp-auth-id-matches", (_p("identity", T.STRING), _p("sieve", T.STRING, opt=True)),
       _PRED, None, (), None, _C.ENVELOPE, None,
       "SMTP AUTH identity matches the chosen message identity",
       "smtp-auth-id-matches('*EnvelopeFrom')"),
    _r(16, "spf-status", (_p("identity", T.STRING, opt=True),), _CMP, T.LIST, EQ_NE, "SPF",
       _C.SERVICE, "SPF Verification", "SPF result is (is not) one of the listed values",
       "spf-status == 'Pass'"),
    _r(17, "spf-passed", (), _PRED, None, (), "SPF", _C.SERVICE, None,
       "SPF result is Pass", "spf-passed"),
    _r(18, "dkim-authentication", (), _CMP, T.NAME, EQ_NE, "DKIM", _C.SERVICE,
       "DKIM Authentication", "DKIM verification result", "dkim-authentication == 'hardfail'"),
    _r(19, "workqueue-count", (), _CMP, T.INT, ALL_SIX, "CNT", _C.SERVICE, None,
       "messages currently in the work queue", "workqueue-count > 1000"),
    _r(20, "subject", (), _CMP, T.REGEX, EQ_NE, None, _C.HEADER, "Subject Header",
       "decoded Subject header matches", "subject == '^\\\\[SPAM\\\\]'"),
    _r(21, "subject-dictionary-match", _DICT_N, _PRED, None, (), "CFG", _C.HEADER,
       "Subject Header → dictionary", "Subject contains a dictionary term",
       "subject-dictionary-match('Confidential')"),
    _r(22, "header", (_p("header", T.HEADER_NAME),), _EITHER, T.REGEX, EQ_NE, None, _C.HEADER,
       "Other Header", "header present, or any instance matches", "header('X-Scan') == 'clean'",
       multi=True),
    _r(23, "header-dictionary-match", (_p("dictionary", T.DICTIONARY),
       _p("header", T.HEADER_NAME), _p("threshold", T.INT, opt=True)), _PRED, None, (), "CFG",
       _C.HEADER, "Other Header → dictionary",
       "named header contains dictionary terms with at least the score",
       "header-dictionary-match('Blocked', 'Cc', 2)", multi=True),
    _r(24, "addr-count", (_p("header", T.HEADER_NAME), _p("header2", T.HEADER_NAME, opt=True),
       _p("header3", T.HEADER_NAME, opt=True)), _CMP, T.INT, ALL_SIX, None, _C.HEADER, None,
       "number of addresses in the listed headers, summed", "addr-count('To', 'Cc') > 30"),
    _r(25, "header-repeats", (_p("field", T.STRING), _p("threshold", T.INT),
       _p("direction", T.STRING, opt=True)), _PRED, None, (), "CNT", _C.LAST, None,
       "same Subject or envelope sender seen at least N times in the last hour",
       "header-repeats('subject', 500, 'incoming')"),
    _r(26, "malformed-header", (), _PRED, None, (), None, _C.HEADER, "Malformed Header",
       "message has a header that is not syntactically valid", "malformed-header"),
    _r(27, "duplicate_boundaries", (), _PRED, None, (), None, _C.SIZE, "Duplicate Boundaries",
       "a multipart structure reuses a MIME boundary", "duplicate_boundaries"),
    _r(28, "body-size", (), _CMP, T.SIZE, ALL_SIX, None, _C.SIZE, "Message Size",
       "size of the whole message", "body-size >= 5M"),
    _r(29, "date", (), _CMP, T.DATE, ALL_SIX, None, _C.ENVELOPE, None,
       "current date/time compared with the literal", "date > '07/28/2003 13:00:00'"),
    _r(30, "random", (_p("n", T.INT),), _EITHER, T.INT, ALL_SIX, None, _C.ENVELOPE, None,
       "random integer 0..N-1; as a predicate true when non-zero", "random(100) < 10"),
    _r(31, "true", (), _PRED, None, (), None, _C.ENVELOPE, "(no condition)",
       "always true", "true"),
    _r(32, "valid", (), _PRED, None, (), None, _C.SIZE, None,
       "message MIME structure parsed without errors", "valid"),
    _r(33, "message-language", (), _CMP, T.NAME, EQ_NE, "LANG", _C.SCAN, "Message Language",
       "detected language of the body", "message-language == 'English'"),
    _r(34, "body-contains", _RE_N, _PRED, None, (), "SCAN", _C.SCAN,
       "Message Body or Attachments", "body and attachments contain at least n matches",
       "body-contains('(?i)confidential')"),
    _r(35, "only-body-contains", _RE_N, _PRED, None, (), None, _C.SCAN, "Message Body",
       "body parts only contain at least n matches", "only-body-contains('unsubscribe')"),
    _r(36, "attachment-contains", _RE_N, _PRED, None, (), "SCAN", _C.SCAN, "Attachment Content",
       "attachments contain at least n matches", "attachment-contains('ACCOUNT NO', 2)"),
    _r(37, "every-attachment-contains", _RE_N, _PRED, None, (), "SCAN", _C.SCAN, None,
       "every attachment contains the pattern", "every-attachment-contains('approved')"),
    _r(38, "attachment-binary-contains", (_p("pattern", T.REGEX),), _PRED, None, (), "SCAN",
       _C.SCAN, None, "raw bytes of an attachment match",
       "attachment-binary-contains('MZ')"),
    _r(39, "encrypted", (), _PRED, None, (), "SCAN", _C.SCAN, None,
       "message content is encrypted", "encrypted"),
    _r(40, "dictionary-match", _DICT_N, _PRED, None, (), "CFG+SCAN", _C.SCAN,
       "Message Body or Attachments → dictionary",
       "body and attachments match dictionary terms with at least the score",
       "dictionary-match('Profanity')"),
    _r(41, "body-dictionary-match", _DICT_N, _PRED, None, (), "CFG", _C.SCAN,
       "Message Body → dictionary", "body parts match dictionary terms",
       "body-dictionary-match('Profanity', 2)"),
    _r(42, "attachment-dictionary-match", _DICT_N, _PRED, None, (), "CFG+SCAN", _C.SCAN,
       "Attachment Content → dictionary", "attachments match dictionary terms",
       "attachment-dictionary-match('Secrets')"),
    _r(43, "attachment-filename", (), _CMP, T.REGEX, EQ_NE, "SCAN", _C.SCAN,
       "Attachment File Info → filename",
       "an attachment (or archive member) name matches; case-sensitive",
       "attachment-filename == '(?i)\\\\.exe$'", multi=True),
    _r(44, "attachment-type", (), _CMP, T.MIME_PATTERN, EQ_NE, "SCAN", _C.SCAN, None,
       "MIME type, declared or guessed from the extension", "attachment-type == 'video/*'",
       multi=True),
    _r(45, "attachment-filetype", (), _CMP, T.NAME, EQ_NE, "SCAN", _C.SCAN,
       "Attachment File Info → file type", "type detected from content",
       "attachment-filetype == 'exe'", multi=True),
    _r(46, "attachment-mimetype", (), _CMP, T.MIME_PATTERN, EQ_NE, None, _C.SIZE,
       "Attachment File Info → MIME type", "declared MIME type only",
       "attachment-mimetype == 'application/pdf'", multi=True),
    _r(47, "attachment-size", (), _CMP, T.SIZE, ALL_SIX, None, _C.SIZE, None,
       "encoded size of an attachment", "attachment-size > 10M", multi=True,
       legacy=("attachment_size",)),
    _r(48, "attachment-protected", (), _PRED, None, (), "SCAN", _C.SCAN, "Attachment Protection",
       "an attachment is password-protected", "attachment-protected"),
    _r(49, "attachment-unprotected", (), _PRED, None, (), "SCAN", _C.SCAN,
       "Attachment Protection → not protected", "an attachment could be read by the scanner",
       "attachment-unprotected"),
    _r(50, "attachment-corrupt", (), _PRED, None, (), "SCAN", _C.SCAN,
       "Attachment File Info → corrupt", "an attachment is corrupt", "attachment-corrupt"),
    _r(51, "image-verdict", (), _CMP, T.NAME, EQ_NE, "IMG", _C.SCAN,
       "Attachment File Info → image analysis", "image analysis verdict",
       "image-verdict == 'suspect'", multi=True),
    _r(52, "smime-gateway-message", (), _PRED, None, (), "SMIME", _C.SIZE,
       "S/MIME Gateway Message", "message arrived S/MIME signed or encrypted and was processed",
       "smime-gateway-message"),
    _r(53, "smime-gateway-verified", (), _PRED, None, (), "SMIME", _C.SIZE,
       "S/MIME Gateway Verified", "gateway decryption and/or verification succeeded",
       "smime-gateway-verified"),
    _r(54, "signed", (), _PRED, None, (), "CMS", _C.SIZE, None,
       "message contains a structurally valid CMS SignedData (no trust check)", "signed"),
    _r(55, "signed-certificate", (_p("which", T.STRING),), _EITHER, T.REGEX, EQ_NE, "CMS",
       _C.SIZE, None, "issuer or signer of any signing certificate matches",
       "signed-certificate('signer') == '@example\\\\.com$'", multi=True),
    _r(56, "url-reputation", (_p("min", T.DECIMAL), _p("max", T.DECIMAL),
       _p("whitelist", T.NAME)), _PRED, None, (), "URL", _C.SCAN, "URL Reputation",
       "a URL has a reputation score within [min, max]", "url-reputation(-10.0, -6.0, '')"),
    _r(57, "url-no-reputation", (_p("whitelist", T.NAME),), _PRED, None, (), "URL", _C.SCAN,
       "URL Reputation → no score", "a URL has no reputation score", "url-no-reputation('')"),
    _r(58, "url-category", (_p("categories", T.LIST), _p("whitelist", T.NAME)), _PRED, None, (),
       "URL", _C.SCAN, "URL Category", "a URL belongs to one of the categories",
       "url-category(['Gambling', 'Malware Sites'], '')"),
    _r(59, "forged-email-detection", (_p("dictionary", T.DICTIONARY), _p("threshold", T.INT)),
       _PRED, None, (), "FED+CFG", _C.HEADER, "Forged Email Detection",
       "From display name resembles a dictionary entry with at least the similarity",
       "forged-email-detection('Executives', 90)"),
    # Project extension (reference 12, Attachment File Info: the dictionary variant has no
    # documented rule name).
    _r(60, "attachment-filename-dictionary-match", _DICT_N, _PRED, None, (), "CFG+SCAN", _C.SCAN,
       "Attachment File Info → filename in dictionary",
       "an attachment (or archive member) name contains a term of the dictionary",
       "attachment-filename-dictionary-match('BlockedNames')", multi=True),
    # Project extension (smime.md 9.1, EFAIL): CBC content decrypted without a verified
    # signature inside could have been edited in transit; the administrator decides.
    _r(61, "smime-gateway-unauthenticated", (), _PRED, None, (), "SMIME", _C.SIZE, None,
       "the gateway decrypted CBC (or 3DES) content that no verified signature covers: "
       "integrity unprotected", "smime-gateway-unauthenticated"),
    # Project extension (issue 16): DMARC (RFC 7489) beside SPF and DKIM, spelt as spf-status
    # is: the result list compared, and the policy the From domain publishes.
    _r(62, "dmarc-status", (), _CMP, T.LIST, EQ_NE, "DMARC", _C.SERVICE, "DMARC Verification",
       "DMARC result (None, Pass, Fail, TempError, PermError) is (is not) one of the listed values",
       "dmarc-status == 'Fail'"),
    _r(63, "dmarc-policy", (), _CMP, T.NAME, EQ_NE, "DMARC", _C.SERVICE, None,
       "policy the From domain publishes for failing mail: none, quarantine or reject "
       "(none when it publishes no DMARC record)", "dmarc-policy == 'reject'"),
    # Project extension (issue 16): the anti-spam and anti-virus verdicts of reference 11 steps
    # 11-12, which AsyncOS acts on in the mail policy; here content filters can read them too.
    _r(64, "spam-verdict", (), _CMP, T.NAME, EQ_NE, "SPAM", _C.SERVICE, "Spam Verdict",
       "anti-spam verdict of the splinter's policy scan: spam, suspect or ham (content filters "
       "only; unavailable when the policy does not scan or skip-spamcheck() was set)",
       "spam-verdict == 'spam'"),
    _r(65, "spam-score", (), _CMP, T.DECIMAL, ALL_SIX, "SPAM", _C.SERVICE, "Spam Score",
       "anti-spam score (Rspamd's; higher is spammier)", "spam-score > 5"),
    _r(66, "virus-verdict", (), _CMP, T.NAME, EQ_NE, "AV", _C.SERVICE, "Virus Verdict",
       "anti-virus verdict: clean, infected or unscannable (content filters only; "
       "unavailable when the policy does not scan or skip-viruscheck() was set)",
       "virus-verdict == 'infected'"),
)


def _a(
    n: int, name: str, params: tuple[Param, ...], final: bool, repeat: Repeat | None,
    cf: str | None, desc: str, ex: str, *, legacy: tuple[str, ...] = (),
) -> ActionSig:
    return ActionSig(n, name, params, final, repeat, cf, desc, ex, legacy)


_S, _F, _L = Repeat.SLOT, Repeat.FLAG, Repeat.LIST
_COPY = (_p("to", T.EMAIL, var=True), _p("subject", T.STRING, opt=True, var=True),
         _p("return-path", T.RETURN_PATH, opt=True, var=True),
         _p("alt-host", T.HOST, opt=True, var=True))
_NOTE = (_p("to", T.EMAIL, var=True), _p("subject", T.STRING, opt=True, var=True),
         _p("return-path", T.RETURN_PATH, opt=True, var=True),
         _p("template", T.TEMPLATE, opt=True, var=True))
# rule: 0 always encrypt, 1 "TLS first" (reference 7.1; the GUI writes a trailing integer).
_ENC = (_p("profile", T.ENCRYPTION_PROFILE), _p("subject", T.STRING, opt=True, var=True),
        _p("rule", T.FLAG01, opt=True))
_CMT = _p("comment", T.STRING, opt=True, var=True)
_PS = _p("preserve_signed", T.FLAG01, opt=True)
_WL = _p("whitelist", T.NAME)
_MINMAX = (_p("min", T.DECIMAL), _p("max", T.DECIMAL))
_CATS = (_p("categories", T.LIST),)
_REPL = _p("replacement", T.STRING)


def _skip(n: int, what: str, cf: str | None = None) -> ActionSig:
    return _a(n, f"skip-{what}check", (), False, _F, cf, f"bypass {what} scanning",
              f"skip-{what}check()")


ACTIONS: tuple[ActionSig, ...] = (
    _a(1, "skip-filters", (), True, None, "Skip Remaining Content Filters",
       "stop message filters; continue the pipeline", "skip-filters()", legacy=("skip_filters",)),
    _a(2, "deliver", (), True, None, None, "same as skip-filters()", "deliver()"),
    _a(3, "drop", (), True, None, "Drop", "discard silently", "drop()"),
    _a(4, "bounce", (), True, None, "Bounce", "reject back to the envelope sender", "bounce()"),
    _a(5, "encrypt", _ENC, True, None, "Encrypt and Deliver Now",
       "encrypt with an encryption profile (rule 0 always, 1 TLS first) and deliver now",
       "encrypt('CompanyProfile', '$Subject', 0)"),
    _a(6, "smime-gateway", (_p("profile", T.PROFILE),), True, None, "S/MIME Sign/Encrypt",
       "S/MIME sign/encrypt with the sending profile and deliver now",
       "smime-gateway('sign-and-encrypt')"),
    _a(7, "alt-rcpt-to", (_p("address", T.EMAIL),), False, _S, "Change Recipient to",
       "replace the envelope recipients", "alt-rcpt-to('review@example.com')"),
    _a(8, "alt-mailhost", (_p("host", T.HOST),), False, _S, "Send to Alternate Destination Host",
       "deliver to this host instead of the MX", "alt-mailhost('mail2.example.com')"),
    _a(9, "alt-src-host", (_p("interface", T.INTERFACE),), False, _S, "Deliver from IP Interface",
       "deliver from this IP interface or interface group", "alt-src-host('Outbound2')"),
    _a(10, "bounce-profile", (_p("profile", T.NAME),), False, _S, None,
       "use this bounce profile if delivery fails", "bounce-profile('fastbounce')"),
    _a(11, "bcc", _COPY, False, _L, "Send Copy (Bcc:)", "send an unscanned blind copy",
       "bcc('audit@example.com', '[copy] $Subject')"),
    _a(12, "bcc-scan", _COPY, False, _L, None,
       "send a blind copy that is processed as a new message", "bcc-scan('audit@example.com')"),
    _a(13, "notify", _NOTE, False, _L, "Notify", "send a notification about the message",
       "notify('postmaster@example.com', 'Blocked: $Subject')"),
    _a(14, "notify-copy", _NOTE, False, _L, "Notify (with copy of original)",
       "notification plus a scanned copy of the message", "notify-copy('legal@example.com')"),
    _a(15, "archive", (_p("log", T.NAME),), False, _L, None,
       "append the message to an mbox archive log", "archive('outgoing')"),
    _a(16, "quarantine", (_p("quarantine", T.QUARANTINE),), False, _S, "Quarantine",
       "hold the message in a policy quarantine", "quarantine('Policy')"),
    _a(17, "duplicate-quarantine", (_p("quarantine", T.QUARANTINE),), False, _L,
       "Quarantine → Duplicate message", "put a copy in a quarantine; the original continues",
       "duplicate-quarantine('Policy')"),
    _a(18, "insert-header", (_p("header", T.HEADER_NAME), _p("value", T.STRING, var=True)),
       False, _L, "Add/Edit Header", "add a header", "insert-header('X-Group', '$Group')"),
    _a(19, "strip-header", (_p("header", T.HEADER_NAME),), False, _L, "Strip Header",
       "remove every instance of a header", "strip-header('X-Internal')"),
    _a(20, "edit-header-text", (_p("header", T.HEADER_NAME), _p("pattern", T.REGEX),
       _p("replacement", T.STRING)), False, _L, "Add/Edit Header (edit)",
       "regex replace inside a header's value", "edit-header-text('Subject', '^', '[EXT] ')"),
    _a(21, "edit-body-text", (_p("pattern", T.REGEX), _p("replacement", T.STRING)), False, _L,
       None, "regex replace inside body parts", "edit-body-text('secret', '******')"),
    _a(22, "html-convert", (), False, _F, None, "convert HTML body parts to plain text",
       "html-convert()"),
    _a(23, "add-footer", (_p("resource", T.TEXT_RESOURCE),), False, _S,
       "Add Disclaimer Text (below)", "append a disclaimer text resource",
       "add-footer('disclaimer')"),
    _a(24, "add-heading", (_p("resource", T.TEXT_RESOURCE),), False, _S,
       "Add Disclaimer Text (above)", "prepend a disclaimer text resource",
       "add-heading('external-warning')"),
    _skip(25, "spam"), _skip(26, "virus"), _skip(27, "amp"),
    _skip(28, "vof", "Bypass Outbreak Filter Scanning"),
    _skip(29, "marketing"), _skip(30, "social"), _skip(31, "bulk"),
    _a(32, "drop-attachments-by-name", (_p("pattern", T.REGEX), _CMT), False, _L,
       "Strip Attachment by File Info → name", "remove attachments whose name matches",
       "drop-attachments-by-name('(?i)\\\\.exe$')", legacy=("drop_attachments",)),
    _a(33, "drop-attachments-by-type", (_p("type", T.MIME_PATTERN), _CMT), False, _L, None,
       "remove attachments by MIME type", "drop-attachments-by-type('video/*')"),
    _a(34, "drop-attachments-by-filetype", (_p("filetype", T.NAME), _CMT), False, _L,
       "Strip Attachment by File Info → file type", "remove attachments by content fingerprint",
       "drop-attachments-by-filetype('Executable')"),
    _a(35, "drop-attachments-by-mimetype", (_p("type", T.MIME_PATTERN), _CMT), False, _L,
       "Strip Attachment by File Info → MIME type", "remove attachments by declared MIME type",
       "drop-attachments-by-mimetype('application/x-msdownload')"),
    _a(36, "drop-attachments-by-size", (_p("size", T.SIZE), _CMT), False, _L,
       "Strip Attachment by File Info → size", "remove attachments at least this large",
       "drop-attachments-by-size(10M)"),
    _a(37, "drop-attachments-where-contains", (_p("pattern", T.REGEX), _CMT,
       _p("threshold", T.INT, opt=True)), False, _L, "Strip Attachment by Content",
       "remove attachments containing at least n matches",
       "drop-attachments-where-contains('SECRET')"),
    _a(38, "drop-attachments-where-dictionary-match", (_p("dictionary", T.DICTIONARY),
       _p("threshold", T.INT, opt=True), _CMT), False, _L,
       "Strip Attachment by Content → dictionary", "remove attachments matching dictionary terms",
       "drop-attachments-where-dictionary-match('Secrets')"),
    _a(39, "drop-attachments-where-image-verdict", (_p("verdict", T.NAME), _CMT), False, _L,
       "Strip Attachment by File Info → image analysis", "remove images with the verdict",
       "drop-attachments-where-image-verdict('suspect')"),
    _a(40, "encrypt-deferred", _ENC, False, _S, "Encrypt on Delivery",
       "encrypt after all processing, at delivery (rule 0 always, 1 TLS first)",
       "encrypt-deferred('CompanyProfile', '$Subject', 1)"),
    _a(41, "smime-gateway-deferred", (_p("profile", T.PROFILE),), False, _S,
       "S/MIME Sign/Encrypt on Delivery", "S/MIME sign/encrypt at delivery",
       "smime-gateway-deferred('sign-only')"),
    _a(42, "tag-message", (_p("tag", T.NAME),), False, _L, "Add Message Tag",
       "attach an invisible tag for DLP policies", "tag-message('finance')"),
    _a(43, "log-entry", (_p("text", T.STRING, var=True),), False, _L, "Add Log Entry",
       "write a custom line to the mail log", "log-entry('matched $FilterName')"),
    _a(44, "url-reputation-replace", (*_MINMAX, _REPL, _WL, _PS), False, _L,
       "URL Reputation → replace", "replace URLs in a score range with text",
       "url-reputation-replace(-10.0, -6.0, '[removed]', '')"),
    _a(45, "url-reputation-defang", (*_MINMAX, _WL, _PS), False, _L, "URL Reputation → defang",
       "make URLs in a score range unclickable", "url-reputation-defang(-10.0, -6.0, '')"),
    _a(46, "url-reputation-proxy-redirect", (*_MINMAX, _WL, _PS), False, _L,
       "URL Reputation → redirect", "redirect URLs in a score range through the proxy",
       "url-reputation-proxy-redirect(-10.0, -6.0, '')"),
    _a(47, "url-no-reputation-replace", (_REPL, _WL, _PS), False, _L, "URL Reputation (no score)",
       "replace URLs without a score", "url-no-reputation-replace('[removed]', '')"),
    _a(48, "url-no-reputation-defang", (_WL, _PS), False, _L, "URL Reputation (no score)",
       "defang URLs without a score", "url-no-reputation-defang('')"),
    _a(49, "url-no-reputation-proxy-redirect", (_WL, _PS), False, _L,
       "URL Reputation (no score)", "redirect URLs without a score",
       "url-no-reputation-proxy-redirect('')"),
    _a(50, "url-category-replace", (*_CATS, _REPL, _WL, _PS), False, _L,
       "URL Category → replace", "replace URLs in the categories",
       "url-category-replace(['Gambling'], '[removed]', '')"),
    _a(51, "url-category-defang", (*_CATS, _WL, _PS), False, _L, "URL Category → defang",
       "defang URLs in the categories", "url-category-defang(['Gambling'], '')"),
    _a(52, "url-category-proxy-redirect", (*_CATS, _WL, _PS), False, _L,
       "URL Category → redirect", "redirect URLs in the categories",
       "url-category-proxy-redirect(['Gambling'], '')"),
    _a(53, "no-op", (), False, _L, None, "do nothing", "no-op()"),
    # Reference 12 "Bypass DKIM Signing": no documented language form; the project's (R).
    _a(54, "skip-dkim-signing", (), False, _F, "Bypass DKIM Signing",
       "do not DKIM-sign this message when it leaves", "skip-dkim-signing()"),
)
# fmt: on

#: Spellings of older guides that still work, with a deprecation warning naming the current one
#: (W503): old name (as written, lower case) -> current name. Only unambiguous ones: an old name
#: that maps to one row and is no other row's name. Each row's ``legacy`` spellings (the 7.x
#: guides' underscore forms) are added below; any other `_` for `-` is equivalent, silently
#: (reference 2.5).
OBSOLETE: Mapping[str, str] = MappingProxyType({"drop_attachments": "drop-attachments-by-name"})

#: Action variables of reference 8.2 (lower-cased name -> description). `$Header['X']` is
#: handled separately; `$envelopefrom`/`$envelopesender` are content-filter aliases.
VARIABLES: Mapping[str, str] = MappingProxyType({
    "allheaders": "all header lines of the message",
    "bodysize": "message size in bytes",
    "certificatesigners": "unique signer addresses of all signatures, comma separated",
    "date": "current date, MM/DD/YYYY",
    "dropped_filename": "name of the most recently dropped attachment",
    "dropped_filenames": "names of all dropped attachments",
    "dropped_filetypes": "types of all dropped attachments",
    "envelopefrom": "envelope sender",
    "envelopesender": "envelope sender (content-filter alias)",
    "enveloperecipients": "all envelope recipients, comma separated",
    "filenames": "names of all attachments",
    "filesizes": "sizes of all attachments",
    "filetypes": "fingerprint types of all attachments",
    "filtername": "name of the filter being processed",
    "gmtimestamp": "current time in Received: date format, GMT",
    "group": "HAT sender group, or >Unknown<",
    "header": "value of the named header: $Header['Name']",
    "hostname": "the gateway's host name (gateway.toml's hostname, else this system's)",
    "matchedcontent": "text that made a content rule true",
    "mid": "the message's internal ID: under `filterlang serve` its queue id (as in tracking and `filterlang queue`), offline `1`",
    "policy": "HAT mail flow policy, or >Unknown<",
    "recvint": "receiving IP interface",
    "recvlistener": "receiving listener",
    "remoteip": "IP address of the sending host",
    "remote_ip": "IP address of the sending host (older spelling)",
    "remotehost": "validated host name of the sending host",
    "reputation": "sender reputation score, or None",
    "smtpauthid": "SMTP AUTH user name",
    "spamscore": "anti-spam score of the splinter, or None when it was not scanned",
    "spamverdict": "anti-spam verdict (spam, suspect, ham), or None when not scanned",
    "virusname": "name of the virus found, or empty",
    "virusverdict": "anti-virus verdict (clean, infected, unscannable), or None when not scanned",
    "subject": "the message's Subject",
    "time": "current local time",
    "tlsclientsubject": "subject of the client certificate the listener verified at STARTTLS, or empty",
    "timestamp": "current local time in Received: date format",
})


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


_RULES_BY_NAME: Mapping[str, RuleSig] = MappingProxyType(
    {k: r for r in RULES for k in (_norm(r.name), *map(_norm, r.legacy))}
)
_ACTIONS_BY_NAME: Mapping[str, ActionSig] = MappingProxyType(
    {k: a for a in ACTIONS for k in (_norm(a.name), *map(_norm, a.legacy))}
)
# Keyed by the spelling as written (lower-cased), not normalised: `skip_filters` is the 7.x
# guides' spelling of `skip-filters`, which normalising would make the same word.
_OBSOLETE_BY_NAME: Mapping[str, str] = MappingProxyType(
    {
        **{old.lower(): r.name for r in RULES for old in r.legacy},
        **{old.lower(): a.name for a in ACTIONS for old in a.legacy},
        **{old.lower(): new for old, new in OBSOLETE.items()},
    }
)


@functools.lru_cache(maxsize=1024)
def lookup_rule(name: str) -> RuleSig | None:
    """The rule row for a name in any accepted spelling, or None."""
    return _RULES_BY_NAME.get(_norm(name))


@functools.lru_cache(maxsize=1024)
def lookup_action(name: str) -> ActionSig | None:
    """The action row for a name in any accepted spelling (obsolete ones included), or None."""
    return _ACTIONS_BY_NAME.get(_norm(name))


@functools.lru_cache(maxsize=1024)
def obsolete_replacement(name: str) -> str | None:
    """The current name when `name` is an older guide's spelling (W503), else None."""
    return _OBSOLETE_BY_NAME.get(name.lower())


def aliases() -> list[tuple[str, str]]:
    """Every older spelling with its current name, sorted: for docs/language.md."""
    return sorted(_OBSOLETE_BY_NAME.items())


# The parameter types of each row, by the id of its params tuple (the rows are module-level and
# live for ever): the checker and the compiler read them for every rule and action of a file,
# and hashing the rows themselves costs more than the lookup saves.
_PARAM_TYPES: Mapping[int, tuple[T, ...]] = MappingProxyType(
    {
        id(params): tuple(p.type for p in params)
        for params in (*(r.params for r in RULES), *(a.params for a in ACTIONS))
    }
)


def param_types(params: tuple[Param, ...]) -> tuple[T, ...]:
    """``tuple(p.type for p in params)``, precomputed for the rows of this table."""
    found = _PARAM_TYPES.get(id(params))
    return tuple(p.type for p in params) if found is None else found


KEYWORDS: frozenset[str] = frozenset({"if", "else", "and", "or", "not"})

#: Words that may not be used as filter names (reference 2.5), compared lower-case.
RESERVED_WORDS: frozenset[str] = frozenset(
    KEYWORDS
    | {n.lower() for r in RULES for n in (r.name, *r.legacy)}
    | {n.lower() for a in ACTIONS for n in (a.name, *a.legacy)}
    | {_norm(n).replace("-", "_") for n in (*_RULES_BY_NAME, *_ACTIONS_BY_NAME)}
    | set(_RULES_BY_NAME) | set(_ACTIONS_BY_NAME)
)
