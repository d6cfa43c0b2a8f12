#!/usr/bin/env python3
"""What `tekfac train` costs per step on top of the bare training step: each round runs the
engine bench once for the step (`--rounds 1 --no-peer`, SGD step timed in blocks of 50) and once
with `--cli` (an epoch of `tekfac train` = 2-epoch run - 1-epoch run, per step of 468, which
includes the epoch's evaluation of 10,000 test images and its checkpoint), and prints the
median [min-max] of the per-round ratios CLI step / bench step.

    flock /tmp/tekfac-bench.lock python3 tools/cli_overhead.py ENGINE_BIN ROUNDS

ENGINE_BIN: `cargo bench --bench engine --no-run` prints its path; TEKFAC_DATA_DIR must be set.
"""
import re
import statistics as st
import subprocess
import sys

STEP = re.compile(r"round 0: SGD ([\d.]+) ms")
CLI = re.compile(r"round 0: tekfac train epoch [\d.]+ s \(([\d.]+) ms per step of 468\)")


def run(binary, extra, pattern):
    out = subprocess.run([binary, "--bench", "--rounds", "1", "--no-peer"] + extra,
                         capture_output=True, text=True).stdout
    m = pattern.search(out)
    if not m:
        sys.exit(f"no round line in the output of {binary} {extra}:\n{out}")
    return float(m.group(1))


def main():
    binary, rounds = sys.argv[1], int(sys.argv[2])
    ratios = []
    for r in range(rounds):
        order = [("step", [], STEP), ("cli", ["--cli"], CLI)]
        res = {k: run(binary, e, p) for k, e, p in (order if r % 2 == 0 else order[::-1])}
        ratios.append(res["cli"] / res["step"])
        print(f"round {r}: step {res['step']:.2f} ms, CLI {res['cli']:.2f} ms per step, "
              f"ratio {ratios[-1]:.3f}", flush=True)
    print(f"CLI step / bench step: {st.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]")


if __name__ == "__main__":
    main()
