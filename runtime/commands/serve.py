"""`filterlang serve -c gateway.toml`: run the gateway in the foreground.

`--check` checks everything the gateway needs before it accepts mail (runtime.mta.preflight):
the configuration, listen addresses bindable, data folders writable, certificates and keys
readable and matching, filters compiling, the key store reachable, the metrics address free.
Each problem names the configuration key and the fix; the exit status is 2 when there is one.
"""

from __future__ import annotations

import argparse
import sys

from runtime.commands._config import add_config_argument, config_path, no_config_message, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, " to run")
    parser.add_argument(
        "--check", action="store_true",
        help="check everything serving needs (addresses, folders, certificates, key store, "
        "metrics), print each problem with its config key and fix, then exit",
    )
    parser.add_argument("--json", action="store_true", help="with --check: the problems as JSON")


def _check(path: object) -> tuple[list[dict[str, str]], str]:
    from pathlib import Path

    from runtime.config.config import ConfigError, load_config
    from runtime.mta.preflight import preflight

    try:
        config = load_config(Path(str(path)))
    except ConfigError as exc:
        issues = list(exc.issues)
    else:
        issues = preflight(config)
    return [{"file": i.file, "key": i.key, "message": i.message} for i in issues], \
        "\n".join(str(i) for i in issues)


def run(args: argparse.Namespace) -> int:
    path = config_path(args)
    if path is None:
        print(no_config_message("serve"), file=sys.stderr)
        return 2
    if args.check:
        problems, text = _check(path)
        if args.json:
            print_json({"config": str(path), "ok": not problems, "problems": problems})
        elif problems:
            print(text, file=sys.stderr)
            print(f"{path}: {len(problems)} problem(s); not ready to serve", file=sys.stderr)
        else:
            print(f"{path}: OK (addresses free, folders writable, certificates and keys match, "
                  "filters compile, key store reachable)")
        return 2 if problems else 0
    from runtime.mta.supervisor import serve

    return serve(path)
