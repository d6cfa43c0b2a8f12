#!/bin/bash
# docs/RESULTS.md §6g: §5a's comparison of the four natural-gradient methods again, per epoch,
# with the settings §6c chose on the hold-out split (EKFAC and TEKFAC with the factored shift at
# λ 0.0009; K-FAC and TKFAC as §5a chose them), 5 epochs on the full training set; build 73a47bd.
. "$(dirname "$0")/issue18-common.sh"
bin=${bin:-/work/runs-track/bin/tekfac-73a47bd}
F=${out:-/work/runs-track/final}
run fmlp-ng $F compare --dataset fashion-mnist --model mlp --epochs 5 --batch-size 128 --seed 0 --momentum 0.9 --schedule constant --threads 2 --quiet \
  --optimizers kfac,ekfac,tkfac,tekfac --lr 0.001 \
  --damping-for kfac=0.0009,ekfac=0.0009,tkfac=0.0009,tekfac=0.0009 \
  --damping-rule-for ekfac=factored-shift,tekfac=factored-shift --out $F/fmlp-ng
