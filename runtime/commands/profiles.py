"""`filterlang profiles list|show|search|check|export|import -c gateway.toml`.

Profiles come from `gateway.toml` and from its `profiles_file`. `import` merges a TOML file of
`[profiles.NAME]` sections into the `profiles_file`: every profile is checked first (syntax,
values, signing certificates named in the config) and the file is replaced atomically, so an
import that fails changes nothing. `export` prints the same format.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from runtime.commands._config import (
    accept_after_action,
    add_config_argument,
    print_json,
    required_config,
)
from runtime.config.config import (
    ConfigError,
    GatewayConfig,
    SendingProfile,
    load_profiles_file,
)
from runtime.config.schema import ConfigIssue

FIELDS = ("mode", "signing_certificate", "sign_mode", "missing_key_action", "cipher")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, " whose profiles to work on")
    parser.add_argument("--json", action="store_true",
                        help="machine-readable output (list, show, search, check)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="list sending profiles")
    show = sub.add_parser("show", help="show one profile")
    show.add_argument("name")
    search = sub.add_parser("search", help="profiles whose name or settings contain TEXT")
    search.add_argument("text")
    sub.add_parser("check", help="check every profile against the certificates on disk")
    export = sub.add_parser("export", help="print profiles as TOML (all, or the names given)")
    export.add_argument("names", nargs="*")
    imp = sub.add_parser("import", help="merge profiles from a TOML file (all or nothing)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--replace", action="store_true", help="overwrite profiles of the same name")
    accept_after_action(sub)


def to_toml(profiles: list[SendingProfile]) -> str:
    out = []
    for p in profiles:
        out.append(f"[profiles.{p.name}]")
        for f in FIELDS:
            value = getattr(p, f)
            if value is not None:
                out.append(f'{f} = "{value}"')
        out.append("")
    return "\n".join(out)


def _line(p: SendingProfile) -> str:
    return (f"{p.name}\t{p.mode}\t{p.sign_mode}\tmissing-key={p.missing_key_action}\t"
            f"cert={p.signing_certificate or '-'}\tcipher={p.cipher or 'default'}")


def _check(config: GatewayConfig) -> list[str]:
    problems = []
    for p in config.profiles.values():
        if p.signing_certificate:
            cert = config.certificates[p.signing_certificate]
            for label, path in (("certificate", cert.cert), ("private key", cert.key)):
                if path is None or not Path(path).is_file():
                    problems.append(f"{p.name}: {label} of {cert.name!r} not found at {path}")
    return problems


def _import(config: GatewayConfig, file: Path, replace: bool) -> int:
    pfile = config.source.parent / "profiles.toml"
    target = config.profiles_file
    if target is None:
        print("filterlang profiles: import needs `profiles_file = \"profiles.toml\"` in "
              f"{config.source}; add it (e.g. {pfile})", file=sys.stderr)
        return 1
    issues: list[ConfigIssue] = []
    try:
        incoming = load_profiles_file(file.resolve(), issues)
    except ConfigError as exc:
        issues.extend(exc.issues)
        incoming = {}
    existing: dict[str, SendingProfile] = {}
    if target.exists():
        existing = load_profiles_file(target, issues)
    for p in incoming.values():
        if p.signing_certificate and p.signing_certificate not in config.certificates:
            issues.append(ConfigIssue(str(file), f"profiles.{p.name}.signing_certificate",
                                      f"no certificate {p.signing_certificate!r} in {config.source.name}"))
        if not replace and (p.name in existing or p.name in config.profiles):
            issues.append(ConfigIssue(str(file), f"profiles.{p.name}",
                                      "already exists; use --replace to overwrite it"))
    if issues:
        for issue in issues:
            print(issue, file=sys.stderr)
        print("filterlang profiles: nothing imported", file=sys.stderr)
        return 1
    merged = {**existing, **incoming}
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".profiles-")
    with os.fdopen(fd, "w") as fh:
        fh.write(to_toml(sorted(merged.values(), key=lambda p: p.name)))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    print(f"imported {len(incoming)} profile(s) into {target}")
    return 0


def _plain(p: SendingProfile) -> dict[str, str | None]:
    return {"name": p.name, **{f: getattr(p, f) for f in FIELDS}}


def run(args: argparse.Namespace) -> int:
    config = required_config(args, "profiles")
    if config is None:
        return 2
    profiles = sorted(config.profiles.values(), key=lambda p: p.name)
    if args.action in ("list", "search"):
        chosen = [p for p in profiles
                  if args.action == "list" or args.text.lower() in _line(p).lower()]
        if args.json:
            print_json([_plain(p) for p in chosen])
        for p in [] if args.json else chosen:
            print(_line(p))
    elif args.action == "show":
        if args.name not in config.profiles:
            print(f"filterlang profiles: no profile {args.name!r}", file=sys.stderr)
            return 1
        if args.json:
            print_json(_plain(config.profiles[args.name]))
        else:
            print(to_toml([config.profiles[args.name]]), end="")
    elif args.action == "check":
        problems = _check(config)
        if args.json:
            print_json({"profiles": len(profiles), "problems": problems})
        else:
            for line in problems:
                print(line)
            print(f"{len(profiles)} profile(s), {len(problems)} problem(s)")
        return 1 if problems else 0
    elif args.action == "export":
        unknown = [n for n in args.names if n not in config.profiles]
        if unknown:
            print(f"filterlang profiles: no profile {unknown[0]!r}", file=sys.stderr)
            return 1
        chosen = [config.profiles[n] for n in args.names] if args.names else profiles
        print(to_toml(chosen), end="")
    else:
        return _import(config, args.file, args.replace)
    return 0
