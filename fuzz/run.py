"""Run one fuzz target for a budget of runs and seconds: atheris where installed, else hypothesis.

    python -m fuzz.run TARGET [--runs N] [--max-time SECONDS] [--engine atheris|hypothesis]
                              [--timeout 2] [--memory-every 100] [--dir var/fuzz]

Under atheris (libFuzzer) the corpus grows in ``DIR/TARGET/corpus`` (seeded from the examples
and ``../shared/vectors`` on each start) and a crash, a hang (over ``--timeout`` seconds of CPU time) or a
memory blow-up is written to ``DIR/TARGET/`` as ``crash-*`` with its traceback
on stderr; the exit status is then non-zero. Every ``--memory-every``-th input runs with
allocation tracing (``fuzz.harness.run_traced``). The last line says how many runs were made.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fuzz.harness import TARGETS, Target, load, run_timed, run_traced

ROOT = Path(__file__).resolve().parent.parent


def _checked(target: Target, memory_every: int, timeout: float) -> Callable[[bytes], None]:
    """``target.run`` timed in CPU seconds, and every ``memory_every``-th input traced."""
    count = 0

    def one(data: bytes) -> None:
        nonlocal count
        count += 1
        if memory_every and count % memory_every == 0:
            run_traced(target, data)
        else:
            run_timed(target, data, timeout)

    return one


def write_seeds(target: Target, corpus: Path) -> int:
    corpus.mkdir(parents=True, exist_ok=True)
    count = 0
    for seed in target.seeds():
        seed = seed[: target.max_len]
        path = corpus / hashlib.sha1(seed).hexdigest()
        if not path.exists():
            path.write_bytes(seed)
        count += 1
    return count


def warm_up(target: Target) -> None:
    for data in (b"", next(iter(target.seeds()), b"")):
        try:
            target.run(data)
        except Exception as exc:  # a crash on a seed: reported when libFuzzer runs it
            print(f"fuzz {target.name}: warm-up input failed: {exc!r}", file=sys.stderr)


def with_atheris(name: str, runs: int, max_time: int, timeout: float, memory_every: int,
                 workdir: Path) -> int:
    import atheris

    with atheris.instrument_imports():
        target = load(name)
    out = workdir / name
    corpus = out / "corpus"
    seeds = write_seeds(target, corpus)
    # libFuzzer's own limit is wall time, a backstop for an input that never returns; the 2 s
    # limit is checked in CPU time by run_timed (see there).
    wall = max(30, round(timeout * 10))
    args = [sys.argv[0], str(corpus), f"-runs={runs}", f"-timeout={wall}",
            f"-max_len={target.max_len}", f"-artifact_prefix={out}/", "-print_final_stats=1",
            "-rss_limit_mb=4096"]
    if max_time:
        args.append(f"-max_total_time={max_time}")
    # Built on first use (the grammar's tables, the compiled example filters, a spool): not
    # inside the first input's time limit.
    warm_up(target)
    print(f"fuzz {name}: atheris, {seeds} seeds, corpus {corpus}", flush=True)
    atheris.Setup(args, _checked(target, memory_every, timeout))
    atheris.Fuzz()  # exits the process: libFuzzer prints the run count ("Done N runs")
    return 0


def mutate(rng: random.Random, seed: bytes, max_len: int) -> bytes:
    """A few byte-level edits of ``seed`` (the fallback engine's stand-in for libFuzzer's)."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        at = rng.randint(0, len(data))
        if op == 0 and data:  # flip a bit
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert interesting bytes
            data[at:at] = rng.choice([b"\r\n", b"\0", b"\xff", b"(", b"{", b"'", b"<", b"=",
                                      b"\r", b"\n", b"--", b"\x30\x80", b"\x81\xff"])
        elif op == 2 and data:  # delete a run
            del data[at : at + rng.randint(1, 16)]
        elif op == 3 and data:  # duplicate a run
            start = rng.randrange(len(data))
            data[at:at] = data[start : start + rng.randint(1, 64)]
        elif op == 4:  # truncate
            del data[at:]
        elif data:  # random byte
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data[:max_len])


def with_hypothesis(name: str, runs: int, max_time: int, timeout: float, memory_every: int,
                    seed_limit: int = 0, derandomize: bool = False) -> int:
    """Every seed, then generated and mutated inputs, until ``runs`` or ``max_time``.

    ``derandomize`` makes the inputs the same on every run (the smoke in the test suite)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    target = load(name)
    one = _checked(target, memory_every, timeout)
    seeds = [s[: target.max_len] for s in target.seeds()] or [b""]
    if seed_limit and len(seeds) > seed_limit:  # an even spread of the seeds
        seeds = [seeds[i * len(seeds) // seed_limit] for i in range(seed_limit)]
    start = time.monotonic()
    done = 0
    print(f"fuzz {name}: hypothesis, {len(seeds)} seeds", flush=True)
    for data in seeds:
        one(data)
        done += 1
    inputs = st.one_of(
        st.binary(max_size=min(target.max_len, 512)),
        st.tuples(st.sampled_from(seeds), st.randoms(use_true_random=False)).map(
            lambda pair: mutate(pair[1], pair[0], target.max_len)),
    )
    while done < runs and not (max_time and time.monotonic() - start > max_time):
        batch = min(1000, runs - done)

        @settings(max_examples=batch, deadline=None, database=None, derandomize=derandomize,
                  suppress_health_check=list(HealthCheck))
        @given(inputs)
        def fuzz(data: bytes) -> None:
            one(data)

        fuzz()
        done += batch
    print(f"fuzz {name}: done {done} runs in {time.monotonic() - start:.0f} s, no crash", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--max-time", type=int, default=0, help="seconds; 0: no limit")
    ap.add_argument("--timeout", type=float, default=2.0,
                    help="CPU seconds one input may take; 0: no limit")
    ap.add_argument("--memory-every", type=int, default=100,
                    help="trace every Nth input's memory; 0: never")
    ap.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    ap.add_argument("--dir", type=Path, default=ROOT / "var" / "fuzz")
    args = ap.parse_args(argv)
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
        except ImportError:
            engine = "hypothesis"
        else:
            engine = "atheris"
    if engine == "atheris":
        # libFuzzer reads sys.argv itself: give it only the program name.
        sys.argv = sys.argv[:1]
        return with_atheris(args.target, args.runs, args.max_time, args.timeout,
                            args.memory_every, args.dir)
    return with_hypothesis(args.target, args.runs, args.max_time, args.timeout, args.memory_every)


if __name__ == "__main__":
    sys.exit(main())
