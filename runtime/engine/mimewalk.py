"""Walk a message's MIME tree: body parts versus attachments (reference 5.9, as the guide words
it: the body is the first text part) and decoding (5.6).

Limits keep bad input bounded: nesting deeper than ``MAX_DEPTH`` and parts beyond ``MAX_PARTS``
are not walked (a defect is recorded); attachments larger than ``MAX_SCAN`` bytes are not decoded
for content scans.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from collections.abc import Iterator
from email.message import Message
from typing import Any

from attrs import define

from runtime.engine import filetypes

MAX_DEPTH = 100
MAX_PARTS = 20_000
MAX_SCAN = 5 * 1024 * 1024  # reference 5.9 default "maximum attachment size scanned"
SKIPPED_TYPES = ("video/", "audio/", "image/")
DEFAULT_CHARSET = "utf-8"
UUENCODE = ("x-uuencode", "uuencode", "uue", "x-uue")  # scanned as they are, not decoded


@define
class Part:
    """One leaf part with what rules need; decoding happens on first use."""

    msg: Message
    is_body: bool
    alt_group: int | None  # id of the enclosing multipart/alternative, for max-not-sum counting
    filename: str
    declared_type: str
    encoded_size: int
    elided: Any = None  # runtime.engine.elide.Elided when this part's body was kept out of the parser
    elided_key: str = ""
    host: Part | None = None  # for a uuencoded block: the body part that carries it
    block: str = ""  # the uuencoded text itself, removed from the host when dropped
    typed: bool = True  # whether the part declares a Content-Type (else it is the default)
    _payload: bytes | None = None
    _text: str | None = None
    _utf8: bytes | None = None
    _filetype: str | None = None
    _members: list[Part] | None = None
    _lower: bytes | None = None

    @property
    def payload(self) -> bytes:
        """The transfer-decoded bytes (base64 / quoted-printable undone)."""
        if self._payload is None:
            if self.elided_key:
                return bytes(self.elided.payload(self.elided_key))  # not cached: it is large
            self._payload = decode_transfer(self.msg)
        return self._payload

    def head(self, n: int = 4096) -> bytes:
        """The first ``n`` decoded bytes, without decoding a large part entirely."""
        if self.elided_key:
            return bytes(self.elided.payload(self.elided_key, n))
        if self._payload is not None:
            return self._payload[:n]
        return decode_transfer(self.msg)[:n]  # sniffing needs the head only: keep no copy

    # Memory (issue 3: at most 4x the message size): a part keeps one decoded copy at a time
    # besides the parsed message. Text scans use the UTF-8 form; once it exists the str form
    # is not kept, and decoding to text does not keep the transfer-decoded bytes.

    @property
    def text(self) -> str:
        """The part decoded to text with its charset (default charset when none is declared)."""
        if self._text is not None:
            return self._text
        if self._utf8 is not None:
            return self._utf8.decode("utf-8", "surrogatepass")
        try:
            charset = self.msg.get_content_charset() or DEFAULT_CHARSET
        except (TypeError, ValueError, LookupError, IndexError):  # see header_param
            charset = DEFAULT_CHARSET
        if self.encoded_size > MAX_SCAN * 2:
            data = b""
        elif self._payload is not None or self.elided_key:
            data = self.payload
        else:
            data = decode_transfer(self.msg)
        try:
            self._text = data.decode(charset, "replace")
        except (LookupError, ValueError):  # unknown, or no codec name at all (a NUL in it)
            self._text = data.decode(DEFAULT_CHARSET, "replace")
        return self._text

    @property
    def utf8(self) -> bytes:
        """The decoded text as UTF-8, encoded once for every pattern that scans this part."""
        if self._utf8 is None:
            self._utf8 = self.text.encode("utf-8", "surrogatepass")
            self._text = None
        return self._utf8

    @property
    def ascii_lower(self) -> bytes | None:
        """The UTF-8 text lower-cased, for case-insensitive word checks; None unless the text
        is ASCII (where lower-casing is exactly case folding). It is one more copy of the text:
        callers use it for small messages only (rules.content.LOWER_COPY_LIMIT)."""
        if self._lower is None:
            data = self.utf8
            if not data.isascii():
                return None
            self._lower = data.lower()
        return self._lower

    @property
    def scannable(self) -> bool:
        return not self.declared_type.startswith(SKIPPED_TYPES) and self.encoded_size <= MAX_SCAN * 2

    @property
    def filetype(self) -> str:
        if self._filetype is None:
            self._filetype = filetypes.sniff(self.head(), self.filename)
        return self._filetype


def header_param(msg: Message, param: str, header: str = "content-type") -> object:
    """``msg.get_param(param, None, header)``, None where the email package raises (RFC 2231
    continuations mixing ``name*`` and ``name*1`` raise TypeError): a rule that raises makes
    its filter fail, which bypasses the stage."""
    try:
        return msg.get_param(param, None, header)
    except (TypeError, ValueError, LookupError, IndexError):
        return None


def raw_payload(msg: Message) -> object:
    """``msg.get_payload(decode=False)``, which never raises.

    For a body holding 8-bit bytes compat32 decodes the text with the declared charset and
    falls back to ASCII only on LookupError; a charset parameter with a NUL in it raises
    ValueError instead, and a rule that raises makes its filter fail, which bypasses the stage
    (found by the message fuzz target). Here that case takes email's own fallback.
    """
    try:
        return msg.get_payload(decode=False)
    except (ValueError, TypeError):  # TypeError: a charset in mixed RFC 2231 sections
        # email keeps the body as ASCII text with the 8-bit bytes as surrogates; the test
        # tests/runtime/test_rt_bad_input.py (a NUL in the charset) fails if that changes.
        payload = getattr(msg, "_payload", None)
        if not isinstance(payload, str):
            return None
        return payload.encode("ascii", "surrogateescape").decode("ascii", "replace")


def decode_transfer(msg: Message) -> bytes:
    """The part's body with its transfer encoding undone (base64, quoted-printable), else
    its bytes as received, 8-bit ones included."""
    raw = raw_payload(msg)
    if not isinstance(raw, str):
        return b""
    cte = str(msg.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte != "base64" and cte not in UUENCODE:
        # Not from `raw`: for a body with 8-bit bytes, compat32 returns that text decoded
        # with the part's charset, which cannot be turned back into the bytes received.
        data = msg.get_payload(decode=True)
        return data if isinstance(data, bytes) else b""
    try:
        data = raw.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        data = raw.encode("ascii", "ignore")  # 8-bit bytes are no part of these encodings
    if cte == "base64":
        try:
            return base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            return data
    return data


def _filename(msg: Message) -> str:
    """The attachment's name exactly as sent (reference 6.7: matching is whitespace-sensitive).

    ``Message.get_filename`` strips the name, but only for some encodings (a quoted name, an
    RFC 2231 ``%20``; not an RFC 2047 ``_``, decoded after it): the same ``evil.exe `` would
    match ``\\.exe$`` or not depending on how the sender wrote it. So the parameter is read
    the way ``get_filename`` reads it, without the strip.
    """
    try:
        raw = msg.get_param("filename", None, "content-disposition")
        if raw is None:
            raw = msg.get_param("name", None, "content-type")
        name = "" if raw is None else email.utils.collapse_rfc2231_value(raw)
    except Exception:
        name = ""
    if not name:
        return ""
    from runtime.engine.context import decode_words

    return decode_words(str(name), [])


def _has_content_fields(msg: Message) -> bool:
    return any(k[:8].lower() == "content-" for k in msg)


def walk(root: Message, defects: list[str], elided: Any = None) -> list[Part]:
    """Leaf parts of the message in document order, classified body/attachment."""
    parts: list[Part] = []
    alt_counter = 0
    # explicit stack: a 500-deep message must not exhaust the Python stack
    stack: list[tuple[Message, int, int | None]] = [(root, 0, None)]
    # The guide: the body is the first text part and "any additional MIME parts" are
    # attachments. The other renderings of that text in its multipart/alternative (plain and
    # HTML) are the same body; a later text part (a list footer, the text Apple Mail puts
    # between inline images) is an attachment.
    body_found = False
    body_alt: int | None = None
    while stack:
        msg, depth, alt = stack.pop()
        if depth > MAX_DEPTH:
            defects.append(f"MIME nesting deeper than {MAX_DEPTH}; deeper parts not scanned")
            continue
        if len(parts) >= MAX_PARTS:
            defects.append(f"more than {MAX_PARTS} MIME parts; the rest not scanned")
            break
        if msg.is_multipart():
            payload = msg.get_payload()
            children: list[Message] = (
                [c for c in payload if isinstance(c, Message)] if isinstance(payload, list) else [])
            group = alt
            if msg.get_content_type() == "multipart/alternative":
                alt_counter += 1
                group = alt_counter
            stack.extend((c, depth + 1, group) for c in reversed(children))
            continue
        if _has_content_fields(msg):
            ctype = msg.get_content_type()
            name = _filename(msg)
            disposition = (msg.get_content_disposition() or "").lower()
            typed = msg.get("Content-Type") is not None
        else:  # what those calls find in a part without Content-* fields, found faster
            ctype, name, disposition, typed = msg.get_default_type(), "", "", False
        text = ctype in ("text/plain", "text/html") and disposition != "attachment" and not name
        if text and not body_found:
            is_body, body_found, body_alt = True, True, alt
        else:
            is_body = text and alt is not None and alt == body_alt
        raw = raw_payload(msg)
        size = len(raw) if isinstance(raw, str) else 0
        key = ""
        if elided is not None and isinstance(raw, str) and raw.startswith("FILTERLANGELIDED"):
            key = raw.strip()
            size = elided.size(key)
        part = Part(msg, is_body, alt, name, ctype, size, elided, key, typed=typed)
        parts.append(part)
        if is_body and ctype == "text/plain" and size <= MAX_SCAN * 2:
            parts.extend(_uuencoded(part))
    return parts


_UU = re.compile(r"^begin [0-7]{3,4} ([^\r\n]+)\r?\n(.*?)^end\r?$", re.M | re.S)


def _uuencoded(host: Part) -> list[Part]:
    """Uuencoded blocks inside body text count as attachments (reference 5.9)."""
    text = host.text
    if "begin " not in text:
        return []
    found = []
    for m in _UU.finditer(text):
        data = bytearray()
        for line in m.group(2).splitlines():
            try:
                data += binascii.a2b_uu(line)
            except binascii.Error:
                continue
        virtual = Message()
        virtual["Content-Type"] = "application/octet-stream"
        p = Part(virtual, False, None, m.group(1).strip(), "application/octet-stream",
                 len(m.group(0)), host=host, block=m.group(0))
        p._payload = bytes(data)
        found.append(p)
    return found


def iter_texts(parts: list[Part], *, body: bool, attachments: bool) -> Iterator[Part]:
    for p in parts:
        if ((p.is_body and body) or (not p.is_body and attachments)) and p.scannable:
            yield p


MAX_ARCHIVE_DEPTH = 5  # reference 5.9 default


def archive_members(part: Part, depth: int = 0) -> list[Part]:
    """Readable members of a zip attachment as parts, recursively (for content scans only)."""
    import io
    import zipfile

    if part._members is not None:
        return part._members
    part._members = []
    if depth >= MAX_ARCHIVE_DEPTH or part.encoded_size > MAX_SCAN * 2 or part.filetype != "zip":
        return []
    out: list[Part] = part._members
    try:
        with zipfile.ZipFile(io.BytesIO(part.payload)) as zf:
            for info in zf.infolist()[:1000]:
                if info.is_dir() or info.flag_bits & 1 or info.file_size > MAX_SCAN:
                    continue
                data = zf.read(info)
                virtual = Message()
                virtual["Content-Type"] = "application/octet-stream"
                member = Part(virtual, False, None, info.filename, "application/octet-stream",
                              len(data))
                member._payload = data
                out.append(member)
                out.extend(archive_members(member, depth + 1))
    except Exception:  # a broken archive is simply not expanded; attachment-corrupt reports it
        return out
    return out
