#!/usr/bin/env bash
# Issue 16's measurements in one quiet window, in this order: the warm-refresh benchmark, the
# optimizer step benchmarks (MLP, CNN), §5a's six-optimizer comparison again (RESULTS §5d), the
# per-step cost of `tekfac train --max-steps` (cli_ratio.py), the six-optimizer comparison with
# the factored shift (RESULTS §6h), and the statistics benchmark on the CNN.
#   bash experiments/bench16.sh OUT      (from the repository root; TEKFAC_DATA_DIR must be set)
# Other work on the machine pauses while /tmp/tekfac-quiet exists; benchmarks share one lock.
set -u
OUT=${1:?usage: bench16.sh OUT}
mkdir -p "$OUT"
: "${TEKFAC_DATA_DIR:?set TEKFAC_DATA_DIR}"
cargo build --release --quiet
bin=./target/release/tekfac
log() { echo "$(date -u +%H:%M:%S) $*" >> "$OUT/log"; }
touch /tmp/tekfac-quiet
exec 9>/tmp/tekfac-bench.lock
flock 9
log "start $(git rev-parse --short HEAD)"
cargo bench --bench warm -- --rounds 5 > "$OUT/warm.txt" 2>&1; log "warm done"
cargo bench --bench optim -- --model mlp --steps 200 --rounds 3 --optimizers sgd,kfac,ekfac,tekfac > "$OUT/optim-mlp.txt" 2>&1; log "mlp done"
cargo bench --bench optim -- --model cnn --steps 100 --rounds 2 --optimizers sgd,tekfac --no-plain --no-eigen > "$OUT/optim-cnn.txt" 2>&1; log "cnn done"
common=(--dataset fashion-mnist --model mlp --epochs 5 --batch-size 128 --seed 0 --momentum 0.9
  --weight-decay 0 --schedule constant --threads 2 --quiet
  --lr-for sgd=0.05,adam=0.001,kfac=0.001,ekfac=0.001,tkfac=0.001,tekfac=0.001)
rm -rf "$OUT/fmlp" "$OUT/fmlp18"
$bin compare "${common[@]}" --damping-for kfac=0.0009,ekfac=0.003,tkfac=0.0009,tekfac=0.003 \
  --out "$OUT/fmlp" > "$OUT/fmlp.out" 2>&1; log "compare done"
python3 experiments/cli_ratio.py $bin 3 mlp sgd,kfac,ekfac,tekfac > "$OUT/cli-mlp.txt" 2>&1; log "cli done"
$bin compare "${common[@]}" --damping-for kfac=0.0009,ekfac=0.0009,tkfac=0.0009,tekfac=0.0009 \
  --damping-rule-for ekfac=factored-shift,tekfac=factored-shift \
  --out "$OUT/fmlp18" > "$OUT/fmlp18.out" 2>&1; log "compare18 done"
cargo bench --bench stats -- --model cnn --rounds 3 > "$OUT/stats-cnn.txt" 2>&1; log "stats cnn done"
rm -f /tmp/tekfac-quiet
log "end"
