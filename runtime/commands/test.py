"""``filterlang test``: run messages through the gateway's stages offline and print the trace.

With ``-c gateway.toml`` the configured gateway (listener, S/MIME, filters, policies,
profiles, routing) as ``filterlang serve`` builds it; without, filter files and flags that
``runtime.pipeline.offline`` turns into an in-memory configuration. Nothing is sent either way.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from runtime.config.names import CONFIG_ENV, config_from_env
from runtime.engine.context import Connection, Envelope, SmimeState
from runtime.engine.loader import FilterLoadError, load_program
from runtime.engine.services import Services
from runtime.pipeline.offline import simulate
from runtime.pipeline.policies import PolicyError, load_policies
from runtime.pipeline.recorded import RecordedError, read_recorded
from runtime.pipeline.suite import CaseRunner, SuiteError, load_resources, run_suite
from runtime.pipeline.trace import MessageTrace, dumps, to_text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", type=Path,
                   help="filter files, then .eml files or directories of them (with -c: messages only)")
    p.add_argument("-c", "--config", type=Path, metavar="GATEWAY_TOML",
                   help="run the whole configured gateway pipeline, as `filterlang serve` would "
                        "(default $FILTERLANG_CONFIG when only messages are given)")
    p.add_argument("--suite", nargs="+", type=Path, metavar="FILE", help="run TOML test suites")
    p.add_argument("--mail-from", default="sender@example.com")
    p.add_argument("--rcpt", action="append", default=[], help="envelope recipient (repeat)")
    p.add_argument("--remote-ip", default="127.0.0.1")
    p.add_argument("--helo", default="localhost", help="with -c: the client's EHLO name")
    p.add_argument("--tls", action="store_true", help="with -c: as if the client used STARTTLS")
    p.add_argument("--tls-client-subject", default="", metavar="SUBJECT",
                   help="as if STARTTLS verified a client certificate with this subject "
                        "(RFC 4514, e.g. 'CN=mx.partner.example,O=Partner'): $TLSClientSubject, "
                        "and with -c the sender groups' tls_subjects")
    p.add_argument("--commit", action="store_true",
                   help="with -c: really harvest into the key store and park quarantined "
                        "messages (nothing is ever sent)")
    p.add_argument("--listener", default="")
    p.add_argument("--sender-group", default="")
    p.add_argument("--auth-user", default="")
    p.add_argument("--direction", choices=("incoming", "outgoing"), default="incoming")
    p.add_argument("--smime-state", default="none",
                   help="none | failed | verified | unauthenticated [:signer@x,...] (the "
                   "inbound S/MIME result; unauthenticated: CBC content no signature covers)")
    p.add_argument("--policies", type=Path,
                   help="TOML file of mail policies: [[incoming_policies]] / [[outgoing_policies]]")
    p.add_argument("--resources", type=Path,
                   help="TOML file of dictionaries, text_resources and archive_dir")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per message (with --suite: one per case)")
    p.add_argument("-o", "--out", "--output", dest="output", type=Path, metavar="DIR",
                   help="write each resulting message into DIR")
    p.add_argument("--services", type=Path, metavar="FILE",
                   help="recorded provider answers (TOML or JSON: authentication, ldap groups, "
                        "dnslist, reputation), replayed instead of asking the configured "
                        "servers; a provider the file leaves out is unavailable")


def _is_message(p: Path) -> bool:
    return p.is_dir() or p.suffix.lower() in (".eml", ".msg", ".mbox")


def _messages(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out += sorted(x for x in p.rglob("*.eml")) if p.is_dir() else [p]
    return out


def _missing(paths: list[Path]) -> str | None:
    """Why one of the files or folders given cannot be used, naming it; None when all can.
    Checked before anything runs: a message that is not there is a usage error (exit 2), not
    a run that quietly tested nothing."""
    for p in paths:
        if not p.exists():
            return f"{p}: no such file or directory"
        if p.is_dir():
            if _is_message(p) and not any(p.rglob("*.eml")):
                return f"{p}: no .eml files in this folder"
            continue
        try:
            with p.open("rb"):
                pass
        except OSError as exc:
            return f"{p}: cannot read: {exc.strerror or exc}"
    return None


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def _toml(path: Path) -> dict[str, Any]:
    """A --policies or --resources file; its mistakes name the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: {exc}; fix the TOML syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def _progress(i: int, n: int) -> None:
    width = 30
    done = width * i // n
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n}")
    sys.stderr.flush()


def _summary(traces: list[MessageTrace]) -> str:
    counts: dict[str, int] = {}
    for t in traces:
        for d in set(t.recipients.values()) or {"(no recipients)"}:
            counts[d] = counts.get(d, 0) + 1
    rows = [f"{'disposition':<40} messages"] + [f"{d:<40} {n}" for d, n in sorted(counts.items())]
    return "\n".join(rows)


def _recorded(path: Path | None) -> tuple[bool, Services | None]:
    """--services FILE: (usable, the recorded answers; None without it); not usable after
    saying why on stderr."""
    if path is None:
        return True, None
    try:
        return True, read_recorded(path)
    except RecordedError as exc:
        for line in str(exc).splitlines():
            print(f"error: --services: {line}", file=sys.stderr)
        return False, None


def _suite_gateway(config_path: Path) -> CaseRunner:
    """A `config = "gateway.toml"` suite: each case through the configured gateway."""
    from runtime.commands._gateway_trace import Gateway, Session, trace_message
    from runtime.config.config import ConfigError, load_config
    from runtime.pipeline.stages import StageSetupError

    try:
        gw = Gateway.load(load_config(config_path))
    except (ConfigError, StageSetupError) as exc:
        raise SuiteError(f"{config_path}: {exc}") from None
    count = [0]

    def trace_case(case: dict[str, Any], raw: bytes, name: str,
                   services: Services | None) -> MessageTrace:
        count[0] += 1
        session = Session(str(case.get("remote_ip", "127.0.0.1")), str(case.get("helo", "localhost")),
                          str(case.get("listener", "")),
                          str(case.get("mail_from", "sender@example.com")),
                          [str(r) for r in case.get("rcpt", ["rcpt@example.com"])],
                          str(case.get("auth_user", "")), bool(case.get("tls", False)),
                          str(case.get("tls_client_subject", "")))
        return trace_message(gw, session, raw, name, count[0], services)

    return trace_case


def _run_suites(files: list[Path], as_json: bool = False) -> int:
    failures = 0
    total = 0
    for f in files:
        try:
            results = run_suite(f, warn=lambda w: print(w, file=sys.stderr), gateway=_suite_gateway)
        except (SuiteError, PolicyError, OSError) as exc:
            for line in str(exc).splitlines():
                print(f"error: {line}", file=sys.stderr)
            return 2
        for r in results:
            total += 1
            if as_json:
                failures += bool(r.diffs)
                print(json.dumps({"suite": str(f), "case": r.name, "ok": not r.diffs,
                                  "diffs": list(r.diffs)}))
                continue
            if r.diffs:
                failures += 1
                print(f"FAIL {f}: {r.name}")
                for d in r.diffs:
                    print(f"  - {d}")
                print("  trace:")
                print("\n".join("    " + line for line in to_text(r.trace).splitlines()))
            else:
                print(f"ok   {f}: {r.name}")
    print(f"{total - failures} passed, {failures} failed", file=sys.stderr if as_json else sys.stdout)
    return 1 if failures else 0


def _run_config(args: argparse.Namespace) -> int:
    from runtime.commands._config import config_or_none
    from runtime.commands._gateway_trace import (
        Gateway,
        Session,
        commit,
        trace_message,
        write_outputs,
    )
    from runtime.pipeline.stages import StageSetupError

    config = config_or_none(args.config)
    if config is None:
        return 2
    if not args.paths:
        print("error: give at least one .eml file or directory", file=sys.stderr)
        return 2
    missing = _missing(args.paths)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    filters = [p for p in args.paths if not _is_message(p)]
    if filters:
        print(f"error: {filters[0]}: with -c give messages only (.eml files or directories); "
              f"the configuration names the filters", file=sys.stderr)
        return 2
    # What the flags of a run without a configuration stand for, the configuration decides.
    for flag, given in (("--direction", args.direction != "incoming"),
                        ("--smime-state", args.smime_state != "none"),
                        ("--sender-group", bool(args.sender_group)),
                        ("--policies", args.policies is not None),
                        ("--resources", args.resources is not None)):
        if given:
            print(f"warning: {flag} has no effect with -c: the configuration decides it",
                  file=sys.stderr)
    known = [x.name for x in config.listeners]
    if args.listener and args.listener not in known:
        print(f"error: --listener {args.listener!r}: {args.config} has no such listener "
              f"(known: {', '.join(known) or 'none'})", file=sys.stderr)
        return 2
    try:
        ipaddress.ip_address(args.remote_ip)
    except ValueError:
        print(f"error: --remote-ip {args.remote_ip!r} is not an IP address", file=sys.stderr)
        return 2
    usable, recorded = _recorded(args.services)
    if not usable:
        return 2
    try:
        gw = Gateway.load(config, commit=args.commit, recorded=recorded)
    except StageSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    session = Session(args.remote_ip, args.helo, args.listener, args.mail_from,
                      args.rcpt or ["rcpt@example.com"], args.auth_user, args.tls,
                      args.tls_client_subject)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(_messages(args.paths), 1):
        try:
            raw = path.read_bytes()
        except OSError as exc:
            print(f"error: {path}: cannot read: {exc.strerror}", file=sys.stderr)
            return 2
        t = trace_message(gw, session, raw, str(path), i)
        if args.commit:
            commit(gw, t)
        print(dumps(t) if args.json else to_text(t))
        if args.output:
            write_outputs(gw, t, args.output, path.stem)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.suite:
        return _run_suites(args.suite, args.json)
    filter_files = [p for p in args.paths if not _is_message(p)]
    message_paths = [p for p in args.paths if _is_message(p)]
    if args.config is None and not filter_files and config_from_env():
        # Messages only: the gateway $FILTERLANG_CONFIG names decides, as with -c.
        args.config = Path(config_from_env() or "")
    if args.config:
        return _run_config(args)
    if not filter_files or not message_paths:
        print("error: give filter files and at least one .eml file or directory "
              f"(or messages with -c gateway.toml or ${CONFIG_ENV})", file=sys.stderr)
        return 2
    missing = _missing(args.paths)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    try:
        program = load_program(filter_files)
        filters = list(program.filters)
        policies = (load_policies(_toml(args.policies), where=str(args.policies), warn=_warn)
                    if args.policies else None)
        resources = (load_resources(_toml(args.resources), args.resources.parent,
                                    where=str(args.resources), warn=_warn)
                     if args.resources else None)
    except FilterLoadError as exc:
        print(exc, file=sys.stderr)
        print("error: the filters have errors (see `filterlang lint`); nothing was run",
              file=sys.stderr)
        return 2
    except (SuiteError, PolicyError, OSError, tomllib.TOMLDecodeError) as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    for w in program.warnings:
        print(w, file=sys.stderr)
    usable, recorded = _recorded(args.services)
    if not usable:
        return 2
    env = Envelope.simple(args.mail_from, args.rcpt or ["rcpt@example.com"])
    conn = Connection(remote_ip=args.remote_ip, listener=args.listener,
                      sender_group=args.sender_group, auth_user=args.auth_user,
                      direction=args.direction, tls_client_subject=args.tls_client_subject)
    try:
        smime = SmimeState.parse(args.smime_state)
    except ValueError as exc:
        print(f"error: --smime-state: {exc}", file=sys.stderr)
        return 2
    msgs = _messages(message_paths)
    corpus = len(msgs) > 1
    bar = corpus and sys.stderr.isatty()
    traces: list[MessageTrace] = []
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(msgs, 1):
        try:
            raw = path.read_bytes()
        except OSError as exc:
            print(f"error: {path}: cannot read: {exc.strerror}", file=sys.stderr)
            return 2
        t = simulate(raw, env, filters=filters, connection=conn, smime=smime, policies=policies,
                     resources=resources, services=recorded, name=str(path))
        traces.append(t)
        if args.json:
            print(dumps(t))
        elif not bar:
            print(to_text(t))
        if args.output:
            if len(t.results) > 1:  # splinters that content filters changed differently
                for policy, data in t.results.items():
                    (args.output / f"{path.stem}.{policy}{path.suffix}").write_bytes(data)
            else:
                (args.output / path.name).write_bytes(next(iter(t.results.values()), t.result))
        if bar:
            _progress(i, len(msgs))
    if bar:
        sys.stderr.write("\n")
    if corpus and not args.json:
        print(_summary(traces))
    elif corpus:
        print(json.dumps({"summary": _summary(traces)}), file=sys.stderr)
    return 0
