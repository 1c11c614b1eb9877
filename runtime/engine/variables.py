"""Action variables (reference 8) with safe expansion.

Every expanded value is cleaned of CR, LF and NUL (replaced by a space) before it is placed,
so no variable can start a header line, add a recipient or fake a MIME boundary. Header values
are folded by ``email.policy`` when the message is serialised.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from email.utils import formatdate

from runtime.engine.context import MessageContext

_UNSAFE = re.compile(r"[\r\n\0]+")
_HEADER_VAR = re.compile(r"""\$Header\[\s*(['"])(.*?)\1\s*\]""", re.IGNORECASE)


def clean(text: str) -> str:
    return _UNSAFE.sub(" ", text)


def _all_headers(ctx: MessageContext) -> str:
    return "\n".join(f"{k}: {v}" for k, v in ctx.headers.items())


def _attachments(ctx: MessageContext, what: str) -> str:
    from runtime.engine.rules.common import parts

    atts = [p for p in parts(ctx) if not p.is_body]
    if what == "names":
        return ", ".join(p.filename for p in atts if p.filename)
    if what == "sizes":
        return ", ".join(str(p.encoded_size) for p in atts)
    return ", ".join(p.filetype for p in atts)


_TABLE: dict[str, Callable[[MessageContext], str]] = {
    "allheaders": _all_headers,
    "bodysize": lambda c: str(c.size),
    "certificatesigners": lambda c: ", ".join(dict.fromkeys(c.smime.signers)),
    "date": lambda c: time.strftime("%m/%d/%Y"),
    "dropped_filenames": lambda c: ", ".join(n for n, _ in c.dropped),
    "dropped_filename": lambda c: c.dropped[-1][0] if c.dropped else "",
    "dropped_filetypes": lambda c: ", ".join(t for _, t in c.dropped),
    "envelopefrom": lambda c: c.envelope.mail_from,
    "envelopesender": lambda c: c.envelope.mail_from,
    "enveloperecipients": lambda c: ", ".join(c.envelope.rcpt_addresses),
    "filenames": lambda c: _attachments(c, "names"),
    "filesizes": lambda c: _attachments(c, "sizes"),
    "filetypes": lambda c: _attachments(c, "types"),
    "filtername": lambda c: c.current_filter,
    "gmtimestamp": lambda c: formatdate(usegmt=True),
    "group": lambda c: c.connection.sender_group or ">Unknown<",
    "hostname": lambda c: c.connection.gateway_hostname or socket.gethostname(),
    "matchedcontent": lambda c: ", ".join(c.matched_content),
    "mid": lambda c: str(c.mid),
    "policy": lambda c: c.connection.flow_policy or ">Unknown<",
    "recvint": lambda c: c.connection.interface,
    "recvlistener": lambda c: c.connection.listener,
    "remoteip": lambda c: c.connection.remote_ip,
    "remote_ip": lambda c: c.connection.remote_ip,
    "remotehost": lambda c: c.connection.remote_host,
    "reputation": lambda c: _reputation(c),
    "smtpauthid": lambda c: c.connection.auth_user,
    "spamscore": lambda c: _scan(c, "spam", "score", "None"),
    "spamverdict": lambda c: _scan(c, "spam", "verdict", "None"),
    "virusname": lambda c: _scan(c, "virus", "name", ""),
    "virusverdict": lambda c: _scan(c, "virus", "verdict", "None"),
    "subject": lambda c: c.subject(),
    "time": lambda c: time.strftime("%H:%M:%S"),
    "tlsclientsubject": lambda c: c.connection.tls_client_subject,
    "timestamp": lambda c: formatdate(localtime=True),
}
# longest name first, so $dropped_filenames wins over $dropped_filename (reference 8.3)
_NAMES = sorted(_TABLE, key=len, reverse=True)
_VAR = re.compile(r"\$\$|\$(" + "|".join(_NAMES) + ")", re.IGNORECASE)


def _reputation(ctx: MessageContext) -> str:
    provider = getattr(ctx.services, "reputation", None)
    score = provider.score(ctx.connection.remote_ip) if provider is not None else None
    return "None" if score is None else str(score)


def _scan(ctx: MessageContext, service: str, what: str, missing: str) -> str:
    provider = getattr(ctx.services, service, None)
    if provider is None:
        return missing
    value = getattr(getattr(provider, service)(), what)
    return f"{value:g}" if isinstance(value, float) else str(value)


def expand(text: str, ctx: MessageContext, *, extra: dict[str, str] | None = None,
           multiline: bool = False) -> str:
    """Expand every known variable; unknown ``$word`` stays; ``$$`` is a literal dollar.

    ``multiline`` keeps line breaks; only for the body of a new single-part notification,
    where a line break cannot become a header or a boundary.
    """
    cln = (lambda s: s.replace("\0", " ")) if multiline else clean

    def header(m: re.Match[str]) -> str:
        return cln((ctx.header_values(m.group(2)) or [""])[0])

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1).lower()
        if extra and name in extra:
            return cln(extra[name])
        return cln(_TABLE[name](ctx))

    return cln(_VAR.sub(one, _HEADER_VAR.sub(header, text)))
