#!/usr/bin/env python3
"""What `tekfac train` costs per step on top of the bare training step. Each round runs the
engine bench once for the step (`--rounds 1 --no-peer`: the SGD step of the MLP preset on a fixed
batch, timed in blocks of 50) and once with `--cli` (a 1-epoch and a 2-epoch run of
`tekfac train --model mlp --optimizer sgd --quiet`), order alternating between rounds, and
prints per round and as median [min-max] of the per-round ratios:

  loop / step   the training loop's milliseconds per step over the bench step: from the
                `seconds` column of the 2-epoch run's metrics.csv `step` rows, within each
                epoch from the first row after its first 50 steps to its last row (steps 61-460
                and 521-930): batch assembly, the steps with their finiteness checks, progress
                and metrics rows; no evaluation, no checkpoint, no start-up. The median of its
                16 blocks of 50 steps, as the bench step is the median of 7 blocks of 50: the
                figure of issue 17's target (the CLI costs <= 5 % of the step).
  mean / step   the same windows' mean per step (every hiccup of the machine included).
  epoch / step  (2-epoch run - 1-epoch run) / 468 over the bench step: the loop plus one
                evaluation of the 10,000 test images and one checkpoint per epoch.

    flock /tmp/tekfac-bench.lock python3 tools/cli_overhead.py ENGINE_BIN ROUNDS

ENGINE_BIN: `cargo bench --bench engine --no-run` prints its path (it runs the `tekfac` binary of
its own build); TEKFAC_DATA_DIR must be set.
"""
import re
import statistics as st
import subprocess
import sys

STEP = re.compile(r"round 0: SGD ([\d.]+) ms")
CLI = re.compile(r"round 0: tekfac train epoch [\d.]+ s \(([\d.]+) ms per step of 468\).*"
                 r"training loop ([\d.]+) ms per step \(median of 50-step blocks; mean ([\d.]+)\)")


def run(binary, extra, pattern):
    out = subprocess.run([binary, "--bench", "--rounds", "1", "--no-peer"] + extra,
                         capture_output=True, text=True).stdout
    m = pattern.search(out)
    if not m:
        sys.exit(f"no round line in the output of {binary} {extra}:\n{out}")
    return [float(g) for g in m.groups()]


def spread(xs):
    return f"{st.median(xs):.3f} [{min(xs):.3f}-{max(xs):.3f}]"


def main():
    binary, rounds = sys.argv[1], int(sys.argv[2])
    loops, means, epochs = [], [], []
    for r in range(rounds):
        order = [("step", [], STEP), ("cli", ["--cli"], CLI)]
        res = {k: run(binary, e, p) for k, e, p in (order if r % 2 == 0 else order[::-1])}
        (step,), (epoch, loop, mean) = res["step"], res["cli"]
        loops.append(loop / step)
        means.append(mean / step)
        epochs.append(epoch / step)
        print(f"round {r}: step {step:.2f} ms, CLI loop {loop:.2f} ms per step "
              f"(ratio {loops[-1]:.3f}; mean {mean:.2f}, ratio {means[-1]:.3f}), "
              f"CLI epoch {epoch:.2f} ms per step (ratio {epochs[-1]:.3f})", flush=True)
    print(f"CLI loop step / bench step: {spread(loops)}")
    print(f"CLI loop mean step / bench step: {spread(means)}")
    print(f"CLI epoch step / bench step: {spread(epochs)}")


if __name__ == "__main__":
    main()
