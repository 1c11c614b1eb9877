"""`filterlang serve -c gateway.toml`: run the gateway in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.mta.supervisor import serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, type=Path, help="path to gateway.toml")
    parser.add_argument(
        "--check", action="store_true", help="only load and check the configuration, then exit"
    )


def run(args: argparse.Namespace) -> int:
    if args.check:
        from runtime.config.config import ConfigError, load_config
        from runtime.mta.supervisor import CertificateProblem, check_stages, check_tls

        try:
            config = load_config(args.config)
            # The same checks as a start: certificates, keys, trust anchors, filter files.
            check_tls(config)
            check_stages(config)
        except (ConfigError, CertificateProblem) as exc:
            print(exc)
            return 1
        print(f"{args.config}: OK")
        return 0
    return serve(args.config)
