"""What a fuzz target is, and the checks every run gets besides the target's own.

A target turns one input (bytes) into a call of the code under test. The errors that code
documents for bad input (a diagnostic list, ``ConfigError``, ``MalformedError`` ...) are part of
its contract and are caught by the target; anything else escaping is a crash. Besides crashes
the campaign looks for hangs (an input taking over 2 s of CPU time) and for memory
out of proportion to the input: a sampled run is traced and its peak must stay under
``MEMORY_FACTOR`` times the input (with a floor, since even an empty input allocates a parse).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterable
from importlib import import_module

from attrs import frozen

MEMORY_FACTOR = 10
# Peak traced allocation any input may use whatever its size: the fixed cost of one parse
# (tokens, a MIME tree, a spool write) is tens of KB, so small inputs are judged against this.
MEMORY_FLOOR = 1 << 20

#: The targets, by name, as ``module:attribute`` under ``fuzz.targets`` (imported on demand, so
#: that atheris can instrument a target's code as it is imported).
TARGETS: dict[str, str] = {
    "filters": "fuzz.targets.filters:TARGET",
    "fmt": "fuzz.targets.fmt:TARGET",
    "message": "fuzz.targets.message:TARGET",
    "cms": "fuzz.targets.cms:TARGET",
    "smime_mime": "fuzz.targets.smime_mime:TARGET",
    "smtp": "fuzz.targets.smtp:TARGET",
    "config": "fuzz.targets.config:TARGET",
    "keys": "fuzz.targets.keys:TARGET",
}


class Hang(AssertionError):
    """One input took more CPU time than an input may."""


class MemoryBlowup(AssertionError):
    """One input made the code under test allocate far more than its own size."""


@frozen
class Target:
    """One harness: ``run`` takes an input, ``seeds`` yields the starting corpus."""

    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], Iterable[bytes]]
    # Packages whose code atheris instruments for coverage feedback (besides ours).
    instrument: tuple[str, ...] = ()
    max_len: int = 8 * 1024
    # How a kept crash input (tests/fuzz/crashes/TARGET/*) runs again, where that is not
    # `run` itself: a harness whose input format changed keeps replaying its old finds whole.
    replay: Callable[[bytes], None] | None = None

    def run_again(self, data: bytes) -> None:
        (self.replay or self.run)(data)


def load(name: str) -> Target:
    """The target called ``name``; KeyError lists the names there are."""
    try:
        spec = TARGETS[name]
    except KeyError:
        raise KeyError(f"no fuzz target {name!r}; there are {', '.join(sorted(TARGETS))}") from None
    module, _, attribute = spec.partition(":")
    target = getattr(import_module(module), attribute)
    assert isinstance(target, Target)
    return target


def memory_limit(size: int) -> int:
    return max(MEMORY_FACTOR * size, MEMORY_FLOOR)


def run_traced(target: Target, data: bytes) -> int:
    """Run ``target`` on ``data`` with allocation tracing; the peak, checked against the limit."""
    tracemalloc.start()
    try:
        target.run(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if peak > memory_limit(len(data)):
        raise MemoryBlowup(
            f"{target.name}: {len(data)} input bytes made a peak of {peak} bytes "
            f"(limit {memory_limit(len(data))})"
        )
    return peak


def run_timed(target: Target, data: bytes, limit: float) -> float:
    """Run ``target`` on ``data``; its CPU time, which must stay under ``limit`` seconds.

    CPU time, not wall time: on a shared machine a process at low priority may wait for
    seconds between two instructions, and that is no hang of the code under test.
    """
    start = time.process_time()
    target.run(data)
    spent = time.process_time() - start
    if limit and spent > limit:
        raise Hang(f"{target.name}: {len(data)} input bytes took {spent:.2f} s of CPU "
                   f"(limit {limit} s)")
    return spent
