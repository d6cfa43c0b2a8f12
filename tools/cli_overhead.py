#!/usr/bin/env python3
"""What `tekfac train` costs per step on top of the bare training step, across processes. Each
round runs the engine bench three times: for the step (`--rounds 1 --no-peer`: the SGD step of
the MLP preset on a fixed batch, timed in blocks of 50), with `--cli` (a 1-epoch and a 2-epoch
run of the `tekfac` binary, `train --model mlp --optimizer sgd --quiet`), and for the step
again, so that the binary's run sits between two step processes; it prints per round and as
median [min-max] of the per-round ratios:

  loop / step   the binary's training loop, milliseconds per step, over the geometric mean of
                the round's two bench steps: from the `seconds` column of the 2-epoch run's
                metrics.csv `step` rows, within each epoch from the first row after its first 50
                steps to its last row (steps 61-460 and 521-930): batch assembly, the steps with
                their finiteness checks, progress and metrics rows; no evaluation, no
                checkpoint, no start-up. The median of its 16 blocks of 50 steps, as the bench
                step is the median of 7 blocks of 50: the figure of issue 17's target (the CLI
                costs <= 5 % of the step).
  mean / step   the same windows' mean per step (every hiccup of the machine included).
  epoch / step  (2-epoch run - 1-epoch run) / 468 over the bench steps: the loop plus one
                evaluation of the 10,000 test images and one checkpoint per epoch.
  step / step   the round's second bench step over its first: the same code in two processes,
                i.e. how far apart this method puts two things that cost the same (its noise).

The processes of one machine differ by more than the 5 % to be measured (in one quiet run the
bench step took 2.52-3.34 ms in seven processes), so take many rounds; `engine --loop` times the
binary's loop (`tekfac::cli::Steps`) against the step in one process, which this cannot.

    flock /tmp/tekfac-bench.lock python3 tools/cli_overhead.py ENGINE_BIN ROUNDS

ENGINE_BIN: `cargo bench --bench engine --no-run` prints its path (it runs the `tekfac` binary of
its own build); TEKFAC_DATA_DIR must be set.
"""
import math
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
    loops, means, epochs, nulls, steps, raw = [], [], [], [], [], []
    for r in range(rounds):
        (first,) = run(binary, [], STEP)
        epoch, loop, mean = run(binary, ["--cli"], CLI)
        (second,) = run(binary, [], STEP)
        step = math.sqrt(first * second)
        loops.append(loop / step)
        means.append(mean / step)
        epochs.append(epoch / step)
        nulls.append(second / first)
        steps += [first, second]
        raw.append(loop)
        print(f"round {r}: steps {first:.2f} and {second:.2f} ms (ratio {nulls[-1]:.3f}), "
              f"CLI loop {loop:.2f} ms per step (ratio {loops[-1]:.3f}; mean {mean:.2f}, "
              f"ratio {means[-1]:.3f}), CLI epoch {epoch:.2f} ms per step "
              f"(ratio {epochs[-1]:.3f})", flush=True)
    print(f"CLI loop step / bench step: {spread(loops)}")
    print(f"CLI loop mean step / bench step: {spread(means)}")
    print(f"CLI epoch step / bench step: {spread(epochs)}")
    print(f"second bench step / first bench step (the method's noise): {spread(nulls)}")
    print(f"median CLI loop step {st.median(raw):.3f} ms / median bench step "
          f"{st.median(steps):.3f} ms = {st.median(raw) / st.median(steps):.3f}")


if __name__ == "__main__":
    main()
