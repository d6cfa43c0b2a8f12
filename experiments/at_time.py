"""Training loss of each run of a `tekfac compare` directory at fixed wall-clock times and
epochs (the logged window mean at the last step row at or before that point), and the first
time each loss threshold is reached. usage: at_time.py DIR T1,T2,.. E1,E2,.. L1,L2,.."""
import csv, os, sys
d, times, epochs, levels = sys.argv[1], *[[float(x) for x in a.split(',')] for a in sys.argv[2:5]]
order = ['sgd', 'adam', 'kfac', 'ekfac', 'tkfac', 'tekfac']
print('| optimizer | ' + ' | '.join(f'loss at {t:g} s' for t in times) + ' | '
      + ' | '.join(f'loss at epoch {e:g}' for e in epochs) + ' | '
      + ' | '.join(f'seconds to loss ≤ {l:g}' for l in levels) + ' |')
print('|---|' + '---:|' * (len(times) + len(epochs) + len(levels)))
for o in order:
    p = os.path.join(d, o, 'metrics.csv')
    if not os.path.exists(p):
        continue
    rows = list(csv.DictReader(open(p)))
    spe = next(int(r['step']) // int(r['epoch']) for r in rows if r['kind'] == 'epoch')
    steps = [(int(r['step']), float(r['seconds']), float(r['train_loss'])) for r in rows if r['kind'] == 'step']
    def at(pred):
        ok = [s for s in steps if pred(s)]
        return f'{ok[-1][2]:.4f}' if ok else '—'
    # NOTE: a run that ended before t has no loss at t (it is not carried forward).
    cells = [at(lambda s, t=t: s[1] <= t) if t <= float(rows[-1]['seconds']) else 'ended' for t in times]
    cells += [at(lambda s, e=e: s[0] <= e * spe) for e in epochs]
    for l in levels:
        hit = [s for s in steps if s[2] <= l]
        cells.append(f'{hit[0][1]:.1f}' if hit else 'not reached')
    print(f'| {o} | ' + ' | '.join(cells) + ' |')
