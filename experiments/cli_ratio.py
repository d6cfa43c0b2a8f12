"""Per-step cost of `tekfac train --max-steps` for several optimizers, interleaved rounds.
Each round runs every optimizer for N1 and N2 steps; the per-step cost is (t(N2) - t(N1)) / (N2 - N1),
which removes start-up (data loading, first allocation). Prints per-round ms/step and the median
of per-round ratios to the first optimizer, with their range.
usage: cli_ratio.py BIN ROUNDS MODEL OPT1,OPT2,.. [N1 N2]"""
import os, statistics, subprocess, sys, tempfile, time
binp, rounds, model, opts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(',')
n1, n2 = (int(sys.argv[5]), int(sys.argv[6])) if len(sys.argv) > 6 else (100, 600)
def run(opt, n):
    with tempfile.TemporaryDirectory() as d:
        cmd = [binp, 'train', '--dataset', 'fashion-mnist', '--model', model, '--optimizer', opt,
               '--epochs', '5', '--max-steps', str(n), '--threads', '2', '--quiet', '--out', os.path.join(d, 'run')]
        t = time.perf_counter(); subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t
per = {o: [] for o in opts}
for r in range(rounds):
    for o in opts:
        a = run(o, n1); b = run(o, n2)
        per[o].append(1000 * (b - a) / (n2 - n1))
    print(f'round {r + 1}: ' + ', '.join(f'{o} {per[o][-1]:.2f} ms/step' for o in opts), flush=True)
base = opts[0]
for o in opts:
    ratios = [x / y for x, y in zip(per[o], per[base])]
    print(f'{o}: median {statistics.median(per[o]):.2f} ms/step, x {base} median {statistics.median(ratios):.2f} '
          f'[{min(ratios):.2f}-{max(ratios):.2f}] over {rounds} rounds')
