"""Everything `filterlang serve` needs before it accepts mail, checked at once (issue 15 item 17).

`serve --check` runs every check; `serve` runs them before it forks its workers, so a port in
use or an unwritable data directory stops it with the configuration key to change and the fix,
not a bare ``[Errno 98]``. Each problem is a `ConfigIssue` (file, dotted key, what to do), the
same form as the configuration loader's own mistakes.

Two checks only warn when `serve` starts (they fail `--check`): the key store, because the
gateway is built to defer mail while the store is unreachable and deliver when it is back; and
the metrics address, which a draining older gateway may still hold during a restart.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from runtime.config.config import GatewayConfig
from runtime.config.schema import ConfigIssue
from runtime.mta.listener import tls_context
from runtime.mta.smtp_client import tls_context as client_tls_context
from runtime.pipeline.stages import StageSetupError, load_context
from smime._keys import load_certificates, load_private_key
from smime.errors import KeyStoreError, SMIMEError
from smime.keystore import open_keystore

# Checks that make `serve` warn instead of refusing to start (see the module's docstring).
SOFT_KEYS = ("storage.keystore_url", "metrics.port", "metrics.address")


def _bind_problem(address: str, port: int, key: str) -> tuple[str, str] | None:
    """(config key, message) if ``address:port`` cannot be bound now, else None."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
    except socket.gaierror as exc:
        return (f"{key}.address" if key != "metrics" else "metrics.address",
                f"{address!r} is not an address of this host ({exc.strerror}); use an IP "
                "address this host has, e.g. 127.0.0.1 or 0.0.0.0")
    except OSError as exc:
        where = f"{address}:{port}"
        if exc.errno == errno.EADDRINUSE:
            return (f"{key}.port", f"{where} is already in use (another program, or a gateway "
                    "already running); stop it or choose another port")
        if exc.errno == errno.EACCES:
            return (f"{key}.port", f"binding {where} is not permitted (ports below 1024 need "
                    "root or CAP_NET_BIND_SERVICE); choose a port above 1023 or grant it")
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            return (f"{key}.address", f"{address!r} is not an address of this host; use one it "
                    "has, e.g. 127.0.0.1 or 0.0.0.0")
        return (f"{key}.port", f"cannot bind {where}: {exc.strerror or exc}")
    return None


def _writable_dir(path: Path) -> str | None:
    """Why the folder ``path`` cannot be written (or created), or None when it can."""
    if path.exists():
        if not path.is_dir():
            return f"{path} is not a folder; point it at a folder"
        if not os.access(path, os.W_OK | os.X_OK):
            return (f"{path} is not writable by this user (uid {os.getuid()}); "
                    f"chown it to the gateway's user or choose another folder")
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return (f"{path} cannot be created: {parent} is a file, not a folder; "
                "choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        return (f"{path} does not exist and cannot be created ({parent} is not writable by this "
                f"user, uid {os.getuid()}); create it for the gateway's user or choose another")
    return None


def _writable_file(path: Path) -> str | None:
    if path.exists():
        if not path.is_file() or not os.access(path, os.W_OK):
            return f"{path} is not a writable file; fix its owner or choose another path"
        return None
    return _writable_dir(path.parent)


def _key_matches(config: GatewayConfig) -> list[tuple[str, str]]:
    """[certificates.X] whose private key does not belong to its certificate."""
    out = []
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for name, c in config.certificates.items():
        if c.key is None:
            continue
        try:
            cert = load_certificates(c.cert.read_bytes(), where=f"certificates.{name}.cert")[0]
            key = load_private_key(c.key.read_bytes(), where=f"certificates.{name}.key")
        except (OSError, SMIMEError, IndexError):
            continue  # unreadable: load_context names it
        if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
            out.append((f"certificates.{name}.key",
                        f"{c.key} is not the private key of {c.cert}; give the key the "
                        "certificate was made from (`filterlang cert show` names the certificate)"))
    return out


def _keystore(config: GatewayConfig) -> str | None:
    url = config.storage.keystore_url
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        if not db.exists():  # the gateway creates it on first use: its folder must allow that
            return _writable_dir(db.parent)
        if not os.access(db, os.R_OK | os.W_OK):
            return f"{db} is not readable and writable by this user; fix its owner"
    try:
        open_keystore(url).close()
    except KeyStoreError as exc:
        return f"{' '.join(str(exc).split())}; start the database or correct the URL"
    return None


def preflight(config: GatewayConfig, *, keystore: bool = True) -> list[ConfigIssue]:
    """Every problem that would stop the gateway (or a part of it) from working, each naming
    the configuration key to change and how. ``keystore=False`` leaves out the key store
    (`serve` does not wait on a database at start: it defers mail until the store is back)."""
    found: list[tuple[str, str]] = []
    bound: dict[tuple[str, int], str] = {}
    for i, lst in enumerate(config.listeners):
        if (lst.address, lst.port) in bound:
            continue  # listeners on one address share one socket
        bound[(lst.address, lst.port)] = f"listeners[{i}]"
        problem = _bind_problem(lst.address, lst.port, f"listeners[{i}]")
        if problem:
            found.append(problem)
        try:
            tls_context(lst)
        except (OSError, ssl.SSLError) as exc:
            what = (f"{lst.tls_cert} / {lst.tls_key}" if lst.tls_client_ca is None
                    else f"{lst.tls_cert} / {lst.tls_key} / tls_client_ca {lst.tls_client_ca}")
            found.append((f"listeners[{i}].tls_cert",
                          f"cannot load {what}: {exc}; give a readable PEM certificate and the "
                          "private key that belongs to it (and PEM CA certificates)"))
    # An outbound policy's CA file that does not load would defer every message of its domain.
    outbound = config.tls_outbound
    for key, policy in [("tls.outbound", outbound.default),
                        *((f'tls.outbound.domains."{d}"', p) for d, p in outbound.domains.items())]:
        try:
            client_tls_context(policy)
        except (OSError, ssl.SSLError) as exc:
            found.append((f"{key}.ca_file", f"cannot load {policy.ca_file}: {exc}; give PEM CA "
                          "certificates (a file, or a folder of them)"))
    m = config.metrics
    if m.port:
        other = bound.get((m.address, m.port))
        if other:
            found.append(("metrics.port", f"{m.address}:{m.port} is also {other}.port; "
                          "choose another port for the metrics"))
        else:
            problem = _bind_problem(m.address, m.port, "metrics")
            if problem:
                found.append(problem)
    route_maildirs = [(f'routes."{r.name}"', _writable_dir(r.maildir))
                      for r in config.routes.entries.values() if r.maildir is not None]
    for key, why in (("storage.data_dir", _writable_dir(config.storage.data_dir)),
                     ("delivery.maildir", _writable_dir(config.delivery.maildir)
                      if config.delivery.maildir else None),
                     *route_maildirs,
                     ("alerts.log", _writable_file(config.alerts.log) if config.alerts.log else None),
                     ("storage.keystore_url", _keystore(config) if keystore else None)):
        if why and all(why != msg for _, msg in found):  # one folder, one problem
            found.append((key, why))
    found += _key_matches(config)
    issues = [ConfigIssue(str(config.source), key, msg) for key, msg in found]
    try:
        load_context(config)  # filters, dictionaries, texts, certificates, trust anchors
    except StageSetupError as exc:
        # Its message already names the file and the key: keep it as it is.
        text = str(exc)
        prefix = f"{config.source}: "
        key, _, msg = text[len(prefix):].partition(": ") if text.startswith(prefix) else ("", "", text)
        issues.append(ConfigIssue(str(config.source), key or "(stages)", msg or text))
    return issues


def is_soft(issue: ConfigIssue) -> bool:
    """A problem `serve` warns about but starts with (see the module's docstring)."""
    return issue.key in SOFT_KEYS
