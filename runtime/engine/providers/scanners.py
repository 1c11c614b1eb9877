"""Anti-spam through Rspamd's HTTP protocol and anti-virus through clamd (issue 16, item 5).

Both are small blocking clients over the standard library: Rspamd's protocol is one HTTP POST
(`/checkv2`, the message as the body, the envelope in request headers, a JSON answer), clamd's
INSTREAM is length-prefixed chunks over a socket. No maintained Python client covers either
without pulling in more than these few lines (the `clamd` package is unmaintained), and the
project's dependencies hold no HTTP client. The pipeline runs them in a worker thread (the
scanning stages are marked `blocking`), never in the queue's event loop.

A scanner that cannot be reached, times out or answers nonsense raises `ScannerError`; the
stage then follows `on_filter_error`.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct

from attrs import frozen

from runtime.config.scanning import AntiSpam, AntiVirus


class ScannerError(Exception):
    """The scanner did not give an answer (its address is in the text)."""


@frozen
class SpamVerdict:
    """Rspamd's answer: `verdict` is spam (its action is reject), suspect (add header, rewrite
    subject, greylist or soft reject) or ham (no action)."""

    verdict: str
    score: float
    action: str  # Rspamd's own action name
    symbols: tuple[str, ...] = ()

    def spam(self) -> SpamVerdict:  # (the provider shape services.SpamProvider asks)
        return self

    def describe(self) -> str:
        return f"{self.verdict} (score {self.score:g}, rspamd action {self.action!r})"


@frozen
class VirusVerdict:
    """clamd's answer: clean, infected (with the signature's name) or unscannable (larger than
    max_size, or refused by clamd's own limits)."""

    verdict: str
    name: str = ""

    def virus(self) -> VirusVerdict:
        return self

    def describe(self) -> str:
        return f"{self.verdict} ({self.name})" if self.name else self.verdict


_SPAM_OF_ACTION = {"reject": "spam", "add header": "suspect", "rewrite subject": "suspect",
                   "greylist": "suspect", "soft reject": "suspect", "no action": "ham"}


def rspamd_check(cfg: AntiSpam, data: bytes, *, ip: str, helo: str, mail_from: str,
                 rcpts: tuple[str, ...], user: str, queue_id: str) -> SpamVerdict:
    """POST /checkv2 as Rspamd's MTA integrations do (the envelope as request headers)."""
    headers = {"Content-Length": str(len(data)), "IP": ip, "Helo": helo, "From": mail_from, "Queue-Id": queue_id}
    headers = {k: v for k, v in headers.items() if v}
    if user:
        headers["User"] = user
    conn = http.client.HTTPConnection(cfg.host, cfg.port, timeout=cfg.timeout)
    try:
        conn.putrequest("POST", "/checkv2", skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, _header_safe(v))
        for r in rcpts:  # one Rcpt header per recipient, as rspamc sends them
            conn.putheader("Rcpt", _header_safe(r))
        conn.endheaders(data)
        reply = conn.getresponse()
        body = reply.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ScannerError(f"rspamd at {cfg.url} did not answer: {_why(exc)}") from None
    finally:
        conn.close()
    if reply.status != 200:
        raise ScannerError(f"rspamd at {cfg.url} answered HTTP {reply.status}: "
                           f"{body[:200].decode('utf-8', 'replace')}")
    try:
        answer = json.loads(body)
        action = str(answer["action"])
        score = float(answer.get("score", 0.0))
    except (ValueError, KeyError, TypeError):
        raise ScannerError(f"rspamd at {cfg.url} answered something other than its JSON "
                           f"result: {body[:200]!r}") from None
    symbols = answer.get("symbols") if isinstance(answer.get("symbols"), dict) else {}
    return SpamVerdict(_SPAM_OF_ACTION.get(action, "suspect"), score, action,
                       tuple(sorted(str(s) for s in symbols)))


_CHUNK = 64 * 1024


def clamd_scan(cfg: AntiVirus, data: bytes) -> VirusVerdict:
    """INSTREAM: `zINSTREAM\\0`, then chunks each after its 4-byte big-endian length, then a
    zero length; clamd answers `stream: OK`, `stream: NAME FOUND` or `... ERROR`."""
    if len(data) > cfg.max_size:
        return VirusVerdict("unscannable", f"larger than max_size ({cfg.max_size} bytes)")
    try:
        if cfg.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(cfg.timeout)
            sock.connect(cfg.socket)
        else:
            sock = socket.create_connection((cfg.host, cfg.port), timeout=cfg.timeout)
    except OSError as exc:
        raise ScannerError(f"clamd at {cfg.address} did not answer: {_why(exc)}") from None
    reply = b""
    try:
        with sock:
            try:
                sock.sendall(b"zINSTREAM\0")
                view = memoryview(data)
                for i in range(0, len(data), _CHUNK):
                    part = view[i:i + _CHUNK]
                    sock.sendall(struct.pack(">I", len(part)) + part)
                sock.sendall(struct.pack(">I", 0))
            except (BrokenPipeError, ConnectionResetError):
                pass  # clamd stops reading past StreamMaxLength: its reply says so
            while not reply.endswith(b"\0"):
                got = sock.recv(4096)
                if not got:
                    break
                reply += got
    except OSError as exc:
        if not reply:
            raise ScannerError(f"clamd at {cfg.address} did not answer: {_why(exc)}") from None
    text = reply.rstrip(b"\0").decode("utf-8", "replace").strip()
    result = text.partition(": ")[2] if text.startswith("stream:") else text
    if result == "OK":
        return VirusVerdict("clean")
    if result.endswith(" FOUND"):
        return VirusVerdict("infected", result[: -len(" FOUND")].strip())
    if "size limit exceeded" in result.lower():
        return VirusVerdict("unscannable", result)
    raise ScannerError(f"clamd at {cfg.address} answered {text!r}" if text
                       else f"clamd at {cfg.address} closed the connection without an answer")


def _header_safe(value: str) -> str:
    return "".join(c if " " <= c < "\x7f" else "?" for c in value)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
