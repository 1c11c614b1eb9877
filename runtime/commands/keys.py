"""`filterlang keys ...`: public keys, harvested keys, review of held changes, audit and alerts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import attrs

from runtime.commands._config import (
    accept_after_action,
    add_config_argument,
    config_or_none,
    config_path,
    iso,
    no_config_message,
    parse_time,
    print_json,
)
from smime.errors import KeyStoreError
from smime.keystore import KeyRecord, KeyStore, exportfile, open_keystore
from smime.keystore.lookup import find_encryption_key

# Epoch-second fields of the key store's records, printed as ISO 8601.
TIME_FIELDS = frozenset({"not_before", "not_after", "first_seen", "last_seen", "last_used",
                         "created", "at"})
# The only actions that may create the key store; every other one reads or changes keys that
# must already be there, so a missing store is a wrong path, not an empty store.
CREATING = frozenset({"add", "import"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, " whose key store (storage.keystore_url) to use")
    parser.add_argument("--store", default=None, metavar="URL",
                        help="a key store URL instead (sqlite:///PATH or postgresql://...)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("add", help="add a public key from a PEM certificate file")
    p.add_argument("name")
    p.add_argument("pem_file", type=Path)
    p = sub.add_parser("list", help="list public keys")
    p.add_argument("--expires-before", type=parse_time, metavar="ISO-TIME",
                   help="only keys expiring before this time (e.g. 2027-01-31)")
    for name, help_text in (("search", "search public keys by name, e-mail, domain or fingerprint"),
                            ("harvested", "list or search harvested keys")):  # fmt: skip
        p = sub.add_parser(name, help=help_text)
        p.add_argument("query", nargs="?" if name == "harvested" else None)
        p.add_argument("--expires-before", type=parse_time, metavar="ISO-TIME")
    p = sub.add_parser("show", help="show one key (by name or fingerprint)")
    p.add_argument("name")
    p.add_argument("--harvested", action="store_true")
    p = sub.add_parser("lookup", help="which key would encrypt to this address, and why")
    p.add_argument("address")
    p = sub.add_parser("remove", help="remove a key")
    p.add_argument("name")
    p.add_argument("--harvested", action="store_true")
    p = sub.add_parser("export", help="write every public key to one text file")
    p.add_argument("file", type=Path)
    p = sub.add_parser("import", help="add every key of an export file (all or nothing)")
    p.add_argument("file", type=Path)
    sub.add_parser("pending", help="list key changes held for review")
    for name in ("accept", "reject"):
        p = sub.add_parser(name, help=f"{name} a held key change")
        p.add_argument("change_id", type=int)
    for name in ("pin", "unpin"):
        p = sub.add_parser(name, help=f"{name} a harvested key (pinned keys are never replaced)")
        p.add_argument("name")
    p = sub.add_parser("promote", help="copy a harvested key to the public key list")
    p.add_argument("name")
    p.add_argument("--as", dest="new_name")
    for name in ("alerts", "audit"):
        p = sub.add_parser(name, help=f"show recent {name}")
        p.add_argument("--limit", type=int, default=50)
    accept_after_action(sub, store=True)


def _times(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: iso(v) if k in TIME_FIELDS and isinstance(v, int | float) else _times(v)
                for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_times(x) for x in data]
    return data


def _plain(obj: Any) -> Any:
    if attrs.has(type(obj)):
        data = attrs.asdict(obj, recurse=True)
        data.pop("pem", None) if isinstance(obj, KeyRecord) else None
        return _times(data)
    return obj


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        if isinstance(data, list):
            data = [_plain(x) for x in data]
        print_json(_plain(data))
    elif text:
        print(text)


def _store_url(args: argparse.Namespace) -> str | None:
    """--store, else the key store of -c / $FILTERLANG_CONFIG; None (said why) exits 2."""
    if args.store:
        return str(args.store)
    path = config_path(args)
    if path is None:
        print(no_config_message("keys") + " (or --store URL)", file=sys.stderr)
        return None
    config = config_or_none(path)
    return None if config is None else config.storage.keystore_url


def _line(k: KeyRecord) -> str:
    flags = ("pinned " if k.pinned else "") + ("revoked " if k.revoked else "")
    return f"{k.name}\t{k.fingerprint[:16]}\t{','.join(k.emails + k.domains)}\t{flags}".rstrip()


def run(args: argparse.Namespace) -> int:
    url = _store_url(args)
    if url is None:
        return 2
    if url.startswith("sqlite:///") and args.action not in CREATING:
        db = Path(url[len("sqlite:///"):])
        if not db.exists():
            where = "--store" if args.store else f"storage.keystore_url of {config_path(args)}"
            print(f"filterlang keys: no key store at {db} ({where}); check the path, or start "
                  "the gateway or `filterlang keys add` once to create it", file=sys.stderr)
            return 2
    try:
        store = open_keystore(url)
    except KeyStoreError as exc:  # unreachable: a temporary failure, not a usage error
        print(f"filterlang keys: {exc}", file=sys.stderr)
        return 1
    try:
        return _run(store, args)
    except KeyStoreError as exc:
        print(f"filterlang keys: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file named on the command line: a usage error
        print(f"filterlang keys: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return 2
    finally:
        store.close()


def _run(store: KeyStore, args: argparse.Namespace) -> int:
    act = args.action
    kind = "harvested" if getattr(args, "harvested", False) else "public"
    if act == "add":
        key = store.add_public(args.name, args.pem_file.read_text(encoding="ascii", errors="replace"))
        _emit(args, key, f"added {key.name} {key.fingerprint}")
    elif act in ("list", "search", "harvested"):
        keys = store.list_keys(kind="harvested" if act == "harvested" else "public",
                               query=getattr(args, "query", None), expires_before=args.expires_before)  # fmt: skip
        _emit(args, keys, "\n".join(_line(k) for k in keys))
    elif act == "show":
        key = store.get(args.name, kind=kind)
        _emit(args, key, "\n".join(f"{f}: {v}" for f, v in _plain(key).items()) + "\n" + key.pem)
    elif act == "lookup":
        res = find_encryption_key(store, args.address)
        _emit(args, res, f"{res.chosen.name if res.chosen else '(none)'}: {res.reason}")
        return 0 if res.chosen else 1
    elif act == "remove":
        store.remove(args.name, kind=kind)
        _emit(args, {"removed": args.name}, f"removed {args.name}")
    elif act == "export":
        keys = store.list_keys(kind="public")
        args.file.write_text(exportfile.dump(keys), encoding="ascii")
        _emit(args, {"exported": len(keys)}, f"exported {len(keys)} keys to {args.file}")
    elif act == "import":
        entries = exportfile.parse(args.file.read_text(encoding="ascii", errors="replace"))
        show = sys.stderr.isatty() and not args.json

        def progress(done: int, total: int) -> None:
            if show:
                print(f"\rimporting {done}/{total}", end="" if done < total else "\n", file=sys.stderr)

        added = store.import_public(entries, progress=progress)
        _emit(args, {"imported": added, "entries": len(entries)}, f"imported {added} of {len(entries)} keys")
    elif act == "pending":
        changes = store.pending()
        _emit(args, changes, "\n".join(f"#{c.id}\t{c.address}\t{c.old_fingerprint and c.old_fingerprint[:16]} -> "
                                       f"{c.new_fingerprint[:16]}\t{c.reason}" for c in changes))  # fmt: skip
    elif act in ("accept", "reject"):
        change = store.resolve_pending(args.change_id, act == "accept")
        _emit(args, change, f"{act}ed change #{change.id} for {change.address}")
    elif act in ("pin", "unpin"):
        store.set_pinned(args.name, act == "pin")
        _emit(args, {act: args.name}, f"{act}ned {args.name}")
    elif act == "promote":
        key = store.promote(args.name, new_name=args.new_name)
        _emit(args, key, f"promoted {args.name} to public key {key.name}")
    elif act == "alerts":
        alerts = store.alerts(args.limit)
        _emit(args, alerts, "\n".join(f"{iso(a.at)}\t{a.kind}\t{a.message}" for a in alerts))
    elif act == "audit":
        log = store.audit(args.limit)
        _emit(args, log, "\n".join(f"{iso(e.at)}\t{e.actor}\t{e.action}\t{e.name}\t{e.old_fingerprint or '-'}"
                                       f" -> {e.new_fingerprint or '-'}" for e in log))  # fmt: skip
    return 0
