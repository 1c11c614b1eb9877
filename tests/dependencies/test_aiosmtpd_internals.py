"""runtime/mta/listener.py builds on aiosmtpd's private internals: they are still there, unchanged.

The listener's fast paths (bench/gateway.py) set aiosmtpd's per-connection tables itself (the
``__dir__`` trick), parse MAIL/RCPT addresses without aiosmtpd's per-call class (``_getaddr``)
and read DATA in large pieces (``smtp_DATA``); its command loop is a copy of aiosmtpd's that
sees the raw line. Each needs aiosmtpd's private names, and each copies or relies on a piece of
aiosmtpd's code whose source is recorded here: when one changes, this fails and says what to
review.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import socket
from pathlib import Path

import aiosmtpd
import aiosmtpd.smtp
import pytest
from aiosmtpd.smtp import SMTP
from dep_internals import changed, source_digest

LISTENER = Path(__file__).resolve().parents[2] / "runtime" / "mta" / "listener.py"
WHERE = "runtime/mta/listener.py (GatewaySMTP)"

# Every private aiosmtpd name the listener reads, sets or overrides (aiosmtpd 1.4.6).
RELIED = {
    # The command loop (GatewaySMTP._handle_client, a copy of aiosmtpd's):
    "_handle_client",
    "_enforce_call_limit",
    "_call_limit_base",
    "_call_limit_default",
    "_tls_handshake_okay",
    "_tls_protocol",
    "_reset_timeout",
    "_smtp_methods",  # the command table: set once per class
    "_handle_hooks",  # the handler's hook table, set once per handler
    "_ehlo_hook_ver",  # which handle_EHLO form (set, since __dir__ hides the handler's)
    "_auth_methods",  # AUTH mechanisms: the listener's own (auth_mech_PLAIN, _LOGIN)
    "_proxy_timeout",
    "_getaddr",  # overridden: the same parse without a class made per call
    "_getparams",
    "_reader",  # smtp_DATA's read_data
    "_writer",
    "_set_post_data_state",
    "_call_handler_hook",
    # connection_made: set once STARTTLS began, so the second call (the TLS session) is told
    # from the first (the connection), which the connection caps counted.
    "_original_transport",
}

# Module-level names of aiosmtpd.smtp the listener imports besides SMTP itself.
MODULE_NAMES = ("ALLOWED_BEFORE_STARTTLS", "BOGUS_LIMIT", "MISSING", "Session",
                "TLSSetupException", "syntax", "Envelope", "AuthResult", "_AuthMechAttr")

# aiosmtpd code the listener copies or depends on the shape of (aiosmtpd 1.4.6).
MIRRORED = {
    # __init__ discovers commands, hooks and AUTH mechanisms through dir(); GatewaySMTP hides
    # them from dir() and sets the three tables itself.
    "SMTP.__init__": (SMTP.__init__, "8a9ca80f23ad9bf2"),
    # GatewaySMTP._handle_client is a copy of it (aiosmtpd's own runs with PROXY).
    "SMTP._handle_client": (SMTP._handle_client, "0e4d096403af6c74"),
    "SMTP._getaddr": (SMTP._getaddr, "0aeb21c56ac1260e"),
    "SMTP.smtp_DATA": (SMTP.smtp_DATA, "3a33f30d3fd6d02f"),
    "SMTP._getparams": (SMTP._getparams, "ca3dd15943d34dcc"),
    # Called again after the STARTTLS handshake with a new session: GatewaySMTP's override
    # admits and counts the connection only the first time, and chooses the policy again.
    "SMTP.connection_made": (SMTP.connection_made, "77a45df5065bba34"),
    # The listener's AUTH mechanisms are entries of _auth_methods that smtp_AUTH calls as
    # method(self, args) and whose AuthResult it turns into 235/535 (or leaves the reply to
    # them when handled); they read the client's answers with challenge_auth.
    "SMTP.smtp_AUTH": (SMTP.smtp_AUTH, "79078b308377ac48"),
    "SMTP.challenge_auth": (SMTP.challenge_auth, "7ca4c59374e53538"),
    # Lists AUTH only once TLS is up (auth_require_tls); handle_EHLO drops an empty AUTH line.
    "SMTP.smtp_EHLO": (SMTP.smtp_EHLO, "1d91592dd954c4cd"),
}


@pytest.mark.parametrize("what", sorted(MIRRORED))
def test_the_aiosmtpd_code_the_listener_follows_is_unchanged(what: str) -> None:
    obj, digest = MIRRORED[what]
    assert source_digest(obj) == digest, changed("aiosmtpd", aiosmtpd.__version__, what, WHERE)


def _server() -> SMTP:
    """An aiosmtpd server with one connection made (some names are set only then)."""

    async def connect() -> SMTP:
        loop = asyncio.get_running_loop()
        server = SMTP(object(), loop=loop, command_call_limit=10)
        ours, theirs = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(lambda: server, ours)
        await asyncio.sleep(0)
        transport.close()
        theirs.close()
        await asyncio.sleep(0)
        return server

    return asyncio.run(connect())


def test_every_private_name_relied_on_is_there() -> None:
    server = _server()
    missing = sorted(name for name in RELIED if not hasattr(server, name))
    assert not missing, changed("aiosmtpd", aiosmtpd.__version__,
                                f"the private names {missing}", WHERE)
    module = sorted(name for name in MODULE_NAMES if not hasattr(aiosmtpd.smtp, name))
    assert not module, changed("aiosmtpd", aiosmtpd.__version__,
                               f"the module names {module}", WHERE)
    params = list(inspect.signature(SMTP._call_handler_hook).parameters)
    assert params[:2] == ["self", "command"], changed(
        "aiosmtpd", aiosmtpd.__version__, "_call_handler_hook's signature", WHERE)


def test_the_list_of_private_names_is_complete() -> None:
    """A new use of one of aiosmtpd's private names must be added to RELIED (and be checked)."""
    tree = ast.parse(LISTENER.read_text(), str(LISTENER))
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            base = node.value
            if (isinstance(base, ast.Name) and base.id == "self") or (
                    isinstance(base, ast.Call) and isinstance(base.func, ast.Name)
                    and base.func.id == "super"):
                used.add(node.attr)
    server = _server()
    unlisted = sorted(name for name in used - RELIED if hasattr(server, name))
    assert not unlisted, f"{WHERE} uses aiosmtpd's {unlisted}: add them to RELIED in this test"
