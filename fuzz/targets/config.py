"""The configuration loader: any bytes as ``gateway.toml``.

The contract: a ``GatewayConfig`` or one ``ConfigError`` listing every mistake with its place
(file and key); never another exception. The file lies in a folder of its own, so relative
paths in it name nothing that exists.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fuzz.corpus import EXAMPLES, ROOT, files
from fuzz.harness import Target
from runtime.config.config import ConfigError, load_config

_dir: Path | None = None


def seeds() -> Iterator[bytes]:
    yield from files(EXAMPLES, "*.toml")
    yield from files(ROOT / "tests", "*.toml")


def run(data: bytes) -> None:
    global _dir
    if _dir is None:
        _dir = Path(tempfile.mkdtemp(prefix="filterlang-fuzz-config-"))
        atexit.register(shutil.rmtree, _dir, True)
    path = _dir / "gateway.toml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.issues, "a ConfigError without issues"
        for issue in exc.issues:
            assert str(issue), issue


TARGET = Target("config", run, seeds, instrument=("runtime", "tomllib"))
