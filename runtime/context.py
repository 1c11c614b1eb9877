"""The message context one filter run sees: envelope, connection, S/MIME state, the message.

The message is parsed lazily: the header block first (cheap, enough for header and envelope
rules), the whole MIME tree only when a body or attachment rule or an edit needs it. Parse
defects are recorded on the context and never raised.
"""

from __future__ import annotations

import email.policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from typing import Any

from attrs import define, field, frozen

# Header edits made before the full parse are replayed on the full tree when it is built, so
# the order "edit headers, then scan the body" sees one consistent message.
_HeaderOp = tuple[str, str, str]  # ("insert"|"strip"|"replace", name, value)


@frozen
class Recipient:
    """One RCPT TO with its DSN parameters (NOTIFY, ORCPT) kept for the delivery stage."""

    address: str
    params: tuple[tuple[str, str], ...] = ()


@frozen
class Envelope:
    mail_from: str
    recipients: tuple[Recipient, ...]
    mail_params: tuple[tuple[str, str], ...] = ()  # RET, ENVID, SIZE, BODY ...

    @classmethod
    def simple(cls, mail_from: str, rcpts: list[str] | tuple[str, ...]) -> Envelope:
        return cls(mail_from, tuple(Recipient(r) for r in rcpts))

    @property
    def rcpt_addresses(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.recipients)


@frozen
class Connection:
    """Facts of the SMTP session; names are the configured nicknames (reference 6.3)."""

    remote_ip: str = "127.0.0.1"
    remote_host: str = ""
    listener: str = ""
    interface: str = ""
    sender_group: str = ""
    flow_policy: str = ""
    auth_user: str = ""
    direction: str = "incoming"


@frozen
class SmimeState:
    """What the inbound S/MIME stage publishes (reference 12.7)."""

    processed: bool = False
    verified: bool = False
    signers: tuple[str, ...] = ()
    issuers: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> SmimeState:
        """``none`` | ``failed`` | ``verified`` [``:signer@x,...``] — the ``--smime-state`` form."""
        state, _, signers = text.partition(":")
        names = tuple(s.strip() for s in signers.split(",") if s.strip())
        if state == "verified":
            return cls(True, True, names)
        if state == "failed":
            return cls(True, False, names)
        return cls()


@define
class MessageContext:
    """Everything a rule or an action may look at or change for one message."""

    raw: bytes
    envelope: Envelope
    connection: Connection = Connection()
    smime: SmimeState = SmimeState()
    mid: int = 1
    services: Any = None  # runtime.services.Services; None means "no provider configured"
    resources: Any = None  # runtime.resources.Resources: dictionaries, texts, archive dir
    defects: list[str] = field(factory=list)
    current_filter: str = ""
    matched_content: list[str] = field(factory=list)
    dropped: list[tuple[str, str]] = field(factory=list)  # (filename, filetype)
    _headers: Message | None = None
    _full: EmailMessage | None = None
    _header_ops: list[_HeaderOp] = field(factory=list)
    _modified: bool = False
    _parts_cache: Any = None
    elided: Any = None  # runtime.elide.Elided for large messages, set by the full parse

    # --- parsing ----------------------------------------------------------------------------

    @property
    def headers(self) -> Message:
        """The header view: the full tree once built, else a headers-only parse."""
        if self._full is not None:
            return self._full
        if self._headers is None:
            try:
                self._headers = BytesHeaderParser(policy=email.policy.default).parsebytes(self.raw)
            except Exception as exc:  # the parser is lenient; this is a last resort
                self.defects.append(f"header parse failed: {exc}")
                self._headers = EmailMessage()
            for op in self._header_ops:
                _apply_header_op(self._headers, op)
        return self._headers

    @property
    def message(self) -> EmailMessage:
        """The full MIME tree, built on first use, with earlier header edits replayed."""
        if self._full is None:
            from runtime.elide import elide

            source, self.elided = elide(self.raw)
            try:
                msg = BytesParser(policy=email.policy.default).parsebytes(source)
            except RecursionError:
                self.defects.append("MIME nesting too deep; message read as one part")
                msg = BytesParser(policy=email.policy.default).parsebytes(source, headersonly=True)
            except Exception as exc:
                self.defects.append(f"MIME parse failed: {exc}")
                msg = EmailMessage()
            assert isinstance(msg, EmailMessage)
            for op in self._header_ops:
                _apply_header_op(msg, op)
            self._full = msg
            self._headers = None
        return self._full

    @property
    def full_parsed(self) -> bool:
        return self._full is not None

    def invalidate_parts(self) -> None:
        self._parts_cache = None

    # --- header access and edits ------------------------------------------------------------

    def header_values(self, name: str) -> list[str]:
        out: list[str] = []
        for value in self.headers.get_all(name, []) or []:
            try:
                out.append(str(value))
            except Exception:  # an undecodable header still yields its raw text
                self.defects.append(f"undecodable {name} header")
                out.append(repr(value))
        return out

    def edit_header(self, op: str, name: str, value: str = "") -> None:
        entry = (op, name, value)
        self._modified = True
        if self._full is not None:
            _apply_header_op(self._full, entry)
        else:
            self._header_ops.append(entry)
            if self._headers is not None:
                _apply_header_op(self._headers, entry)

    def mark_modified(self) -> None:
        self._modified = True

    @property
    def modified(self) -> bool:
        return self._modified

    def as_bytes(self) -> bytes:
        """The message as it stands now (the original bytes if nothing changed)."""
        if not self._modified:
            return self.raw
        try:
            # keep the original line endings (CRLF on the wire, LF in most .eml files)
            linesep = "\r\n" if b"\r\n" in self.raw[:4096] else "\n"
            data = self.message.as_bytes(policy=email.policy.default.clone(linesep=linesep))
            return data if self.elided is None else self.elided.restore(data)
        except Exception as exc:
            self.defects.append(f"message could not be serialised after edits: {exc}")
            return self.raw

    @property
    def size(self) -> int:
        return len(self.as_bytes()) if self._modified else len(self.raw)


def _apply_header_op(msg: Message, op: _HeaderOp) -> None:
    kind, name, value = op
    if kind == "strip":
        del msg[name]
    elif kind == "insert":
        msg[name] = value
    elif kind == "replace":
        # value holds the new values joined by NUL, one per existing instance, in order
        del msg[name]
        for v in value.split("\0"):
            msg[name] = v
