#!/usr/bin/env python3
"""A/B of two builds of one benchmark, interleaved: each round runs `--rounds 1` of binary A and
of binary B (order alternating between rounds), B also running the JAX peer. Prints each round
and medians of per-round ratios [min-max].

    python3 tools/bench_ab.py engine A_BIN B_BIN ROUNDS   # MLP SGD/Adam step (benches/engine.rs)
    python3 tools/bench_ab.py layers A_BIN B_BIN ROUNDS   # CNN SGD step (benches/layers.rs)
    python3 tools/bench_ab.py cli A_BIN B_BIN ROUNDS      # `tekfac train` epoch and loop (engine --cli)

A_BIN / B_BIN: the bench executables of two builds (`cargo bench --bench engine --no-run`
prints the path), e.g. main's library with this tree's benches/ copied in, and this tree.
The cli mode needs both builds' benches/engine.rs to print the training loop's figure.
Wrap it in `flock /tmp/tekfac-bench.lock`.
"""
import re
import statistics as st
import subprocess
import sys

PATTERNS = {
    "engine": (re.compile(r"round 0: SGD ([\d.]+) ms \(forward ([\d.]+), backward ([\d.]+), "
                          r"update ([\d.]+)\), Adam ([\d.]+) ms \(update [\d.]+\), JAX ([\d.-]+)"),
               ["sgd", "forward", "backward", "update", "adam", "jax"]),
    "layers": (re.compile(r"round 0: off ([\d.]+) ms, empirical ([\d.]+) ms, sampled ([\d.]+) ms, "
                          r"JAX ([\d.-]+)"),
               ["sgd", "empirical", "sampled", "jax"]),
    # The engine bench with --cli: each binary times the `tekfac` of its own build.
    # `loop`: the training loop's ms per step from the 2-epoch run's metrics.csv (no evaluation
    # or checkpoint; benches/engine.rs `loop_ms_per_step`).
    "cli": (re.compile(r"round 0: tekfac train epoch ([\d.]+) s \(([\d.]+) ms per step of 468\), "
                       r"JAX epoch ([\d.-]+) s; training loop ([\d.]+) ms per step"),
            ["sgd", "per_step", "jax", "loop"]),
}


def run(bench, binary, peer):
    args = [binary, "--bench", "--rounds", "1"] + ([] if peer else ["--no-peer"])
    args += ["--cli"] if bench == "cli" else []
    out = subprocess.run(args, capture_output=True, text=True).stdout
    pattern, names = PATTERNS[bench]
    m = pattern.search(out)
    if not m:
        sys.exit(f"no round line in the output of {binary}:\n{out}")
    return {k: (None if v == "-" else float(v)) for k, v in zip(names, m.groups())}


def spread(xs):
    return f"{st.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]"


def main():
    bench, a_bin, b_bin, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rows = []
    for r in range(rounds):
        order = [("A", a_bin, False), ("B", b_bin, True)]
        res = {k: run(bench, b, p) for k, b, p in (order if r % 2 == 0 else order[::-1])}
        rows.append(res)
        show = lambda d: " ".join(f"{k} {v:.2f}" for k, v in d.items() if v is not None)
        print(f"round {r}: A {show(res['A'])} | B {show(res['B'])}", flush=True)
    keys = {"engine": ["sgd", "adam"], "cli": ["sgd", "loop"]}.get(bench, ["sgd"])
    for k in keys:
        print(f"B/A {k} step: {spread([r['B'][k] / r['A'][k] for r in rows])}")
    if bench == "engine":
        for s in "AB":
            print(f"{s} adam/sgd: {spread([r[s]['adam'] / r[s]['sgd'] for r in rows])}")
    peer = [r for r in rows if r["B"]["jax"]]
    if peer:
        for s in "AB":
            print(f"{s} sgd/JAX: {spread([r[s]['sgd'] / r['B']['jax'] for r in peer])}")
        unit = "epoch s" if bench == "cli" else "step ms"
        print(f"JAX {unit}: {spread([r['B']['jax'] for r in peer])}")


if __name__ == "__main__":
    main()
