"""A fuzzing campaign: the targets in turn, in slices, with a ledger of what each has run.

    python -m fuzz.campaign [--slice 600] [--until 1000000] [TARGET ...]   # run
    python -m fuzz.campaign --report                                          # the ledger

The 10^6-runs target is far more than one sitting on a shared machine gives the slow targets
(an S/MIME message takes tens of milliseconds under coverage instrumentation), so a campaign
runs each target for ``--slice`` seconds at a time, round robin, and appends one line per
slice to ``var/fuzz/ledger.jsonl``: target, runs, seconds, the commit under test, and whether
the slice ended in a crash. libFuzzer keeps each target's corpus in ``var/fuzz/TARGET/corpus``,
so a later slice carries on from where the last one stopped rather than starting again.
``--report`` sums the clean runs per target since its last crash (a crash means the code
changed after the fix, and the count starts again), which is the figure the issue asks for.
A target stops being scheduled once it reaches ``--until``. Run it under ``nice -n 19``:
it then takes only CPU time nobody else wants.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from fuzz.harness import TARGETS

ROOT = Path(__file__).resolve().parent.parent
DONE = re.compile(r"^Done (\d+) runs in (\d+) second", re.MULTILINE)
EXECUTED = re.compile(r"^stat::number_of_executed_units: (\d+)", re.MULTILINE)
TIMEOUT_UNIT = re.compile(r"Test unit written to (\S*/timeout-[0-9a-f]+)")
CPU_LIMIT = 2.0  # seconds of CPU an input may take (fuzz.run's --timeout)


def commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def clean_runs(ledger: Path) -> dict[str, int]:
    """Runs per target since that target's last crashed slice."""
    totals = {name: 0 for name in TARGETS}
    if ledger.exists():
        for line in ledger.read_text().splitlines():
            entry = json.loads(line)
            name = entry["target"]
            totals[name] = 0 if entry["crashed"] else totals.get(name, 0) + entry["runs"]
    return totals


def one_slice(target: str, seconds: int, workdir: Path) -> dict[str, object]:
    """Run `target` for `seconds`; what the ledger keeps of it."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.run", target, "--runs", "1000000000", "--max-time",
         str(seconds), "--dir", str(workdir)],
        cwd=ROOT, capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    found = DONE.search(output) or EXECUTED.search(output)
    runs = int(found.group(1)) if found else 0
    crashed = proc.returncode != 0
    entry: dict[str, object] = {}
    if crashed:  # keep libFuzzer's account of it beside the crash input it wrote
        (workdir / target / f"slice-{int(time.time())}.log").write_text(output[-20000:])
        unit = TIMEOUT_UNIT.search(output)
        spent = replay_cpu(target, Path(unit.group(1))) if unit else None
        if spent is not None and spent < CPU_LIMIT:
            crashed = False
            entry["interrupted"] = (f"libFuzzer's wall-clock watchdog fired, but "
                                    f"{Path(unit.group(1)).name if unit else ''} replays in "
                                    f"{spent:.3f} s of CPU: the process was stopped or starved, "
                                    f"not hung")
    return {"target": target, "runs": runs, "seconds": round(time.monotonic() - started),
            "crashed": crashed, "commit": commit(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                       time.gmtime()), **entry}


def replay_cpu(target: str, unit: Path) -> float | None:
    """The CPU seconds `unit` takes through `target`, uninstrumented, in a process of its
    own; None when it fails or takes past the limit there too (a real finding).

    libFuzzer's -timeout is wall-clock time (fuzz.run sets it far above the per-input CPU
    limit, as a backstop): a slice whose process was stopped (SIGSTOP, a suspended machine)
    or starved for that long ends in a "timeout" that is no hang of the code under test. The
    harness's own criterion is CPU time (fuzz.harness.run_timed), so that decides."""
    code = ("import sys, time; from fuzz.harness import load; t = load(sys.argv[1]); "
            "d = open(sys.argv[2], 'rb').read(); c = time.process_time(); t.run(d); "
            "print(time.process_time() - c)")
    try:
        proc = subprocess.run([sys.executable, "-c", code, target, str(unit)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return None
    try:
        return float(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (ValueError, IndexError):
        return None


def report(ledger: Path) -> None:
    totals = clean_runs(ledger)
    slices: dict[str, int] = {}
    crashes: dict[str, int] = {}
    if ledger.exists():
        for line in ledger.read_text().splitlines():
            entry = json.loads(line)
            slices[entry["target"]] = slices.get(entry["target"], 0) + 1
            crashes[entry["target"]] = crashes.get(entry["target"], 0) + int(entry["crashed"])
    print(f"{'target':<12} {'clean runs':>12} {'slices':>7} {'crashed slices':>15}")
    for name in sorted(TARGETS):
        print(f"{name:<12} {totals[name]:>12,} {slices.get(name, 0):>7} {crashes.get(name, 0):>15}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*", help=f"some of: {', '.join(sorted(TARGETS))} (all)")
    ap.add_argument("--slice", type=int, default=600, help="seconds per target per turn")
    ap.add_argument("--until", type=int, default=1_000_000, help="clean runs a target needs")
    ap.add_argument("--dir", type=Path, default=ROOT / "var" / "fuzz")
    ap.add_argument("--report", action="store_true", help="print the ledger's totals and stop")
    args = ap.parse_args(argv)
    ledger = args.dir / "ledger.jsonl"
    if args.report:
        report(ledger)
        return 0
    args.dir.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        ap.error(f"no such target: {', '.join(unknown)}")
    names = args.targets or sorted(TARGETS)
    while True:
        todo = [n for n in names if clean_runs(ledger)[n] < args.until]
        if not todo:
            report(ledger)
            return 0
        for name in todo:
            entry = one_slice(name, args.slice, args.dir)
            with ledger.open("a") as out:
                out.write(json.dumps(entry) + "\n")
            print(json.dumps(entry), flush=True)


if __name__ == "__main__":
    sys.exit(main())
