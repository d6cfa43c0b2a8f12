"""Collects the tuning grid of one task (grid/<task>/*/results.csv) into a Markdown table and
prints the chosen setting of each optimizer: the lowest mean training loss of the last grid
epoch (diverged runs rank last)."""
import csv, glob, math, os, sys
task = sys.argv[1]
rows = []
for f in sorted(glob.glob(f'/work/runs/grid/{task}/*/results.csv')):
    for r in csv.DictReader(open(f)):
        name = r['optimizer'].split(' ')[0]
        diverged = 'diverged' in r['optimizer'] or r['final_train_loss'] == ''
        loss = math.inf if diverged else float(r['final_train_loss'])
        acc = r['final_test_accuracy']
        rows.append((name, float(r['lr']), r['damping'], loss, acc, os.path.basename(os.path.dirname(f))))
order = ['sgd', 'adam', 'kfac', 'ekfac', 'tkfac', 'tekfac']
best = {}
for o in order:
    mine = [r for r in rows if r[0] == o]
    if mine:
        best[o] = min(mine, key=lambda r: r[3])
acc_col = task != 'ae'
print('| optimizer | lr | damping | train loss, last grid epoch | ' + ('test acc. | ' if acc_col else '') + 'chosen |')
print('|---|---:|---:|---:|' + ('---:|' if acc_col else '') + ':-:|')
for o in order:
    for r in sorted([r for r in rows if r[0] == o], key=lambda r: (r[1], r[2])):
        loss = 'diverged' if math.isinf(r[3]) else f'{r[3]:.4f}'
        d = f'{float(r[2]):g}' if r[2] else '—'
        a = (f'{100*float(r[4]):.2f} % | ' if r[4] else '— | ') if acc_col else ''
        print(f"| {o} | {r[1]:g} | {d} | {loss} | {a}{'**✓**' if r is best[o] else ''} |")
print()
print('lr-for:', ','.join(f'{o}={best[o][1]:g}' for o in order if o in best))
print('damping-for:', ','.join(f'{o}={float(best[o][2]):g}' for o in order if o in best and best[o][2]))
