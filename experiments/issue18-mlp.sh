#!/bin/bash
# docs/RESULTS.md §6b–§6c: Fashion-MNIST MLP 784-512-256-10, §5a's settings (batch 128,
# momentum 0.9, constant rate, sampled Fisher k = 1, intervals 10/100/10, EMA 0.95, seed 0),
# 2 epochs on the hold-out split (--holdout 10000). The damping rules swapped between the pairs.
# Run in three rounds as time allowed: the first ten runs on the build of 9386c58, the rest on
# 95e9cfc (they train bit-identically); listed here in the order they ran.
. "$(dirname "$0")/issue18-common.sh"
bin=${bin:-/work/runs-track/bin/tekfac-9386c58}
R=${out:-/work/runs-track/mlp-holdout}
c="train --dataset fashion-mnist --model mlp --holdout 10000 --momentum 0.9 --epochs 2 --batch-size 128 --seed 0 --threads 2 --quiet --lr 0.001"
run kfac-own-0.0009     $R $c --optimizer kfac   --damping 0.0009 --out $R/kfac-own-0.0009
run ekfac-own-0.003     $R $c --optimizer ekfac  --damping 0.003  --out $R/ekfac-own-0.003
run ekfac-shift-0.0009  $R $c --optimizer ekfac  --damping 0.0009 --damping-rule factored-shift --out $R/ekfac-shift-0.0009
run kfac-add-0.003      $R $c --optimizer kfac   --damping 0.003  --damping-rule additive --out $R/kfac-add-0.003
run tekfac-own-0.003    $R $c --optimizer tekfac --damping 0.003  --out $R/tekfac-own-0.003
run tekfac-shift-0.0009 $R $c --optimizer tekfac --damping 0.0009 --damping-rule factored-shift --out $R/tekfac-shift-0.0009
run kfac-add-0.0009     $R $c --optimizer kfac   --damping 0.0009 --damping-rule additive --out $R/kfac-add-0.0009
run tkfac-own-0.0009    $R $c --optimizer tkfac  --damping 0.0009 --out $R/tkfac-own-0.0009
run ekfac-shift-0.0003  $R $c --optimizer ekfac  --damping 0.0003 --damping-rule factored-shift --out $R/ekfac-shift-0.0003
run tekfac-shift-0.0003 $R $c --optimizer tekfac --damping 0.0003 --damping-rule factored-shift --out $R/tekfac-shift-0.0003
bin=/work/runs-track/bin/tekfac-95e9cfc
run tekfac-own-0.003-emp    $R $c --optimizer tekfac --damping 0.003 --fisher empirical --out $R/tekfac-own-0.003-emp
run tekfac-own-0.003-scale1 $R $c --optimizer tekfac --damping 0.003 --scale-interval 1 --out $R/tekfac-own-0.003-scale1
run ekfac-shift-0.003       $R $c --optimizer ekfac  --damping 0.003 --damping-rule factored-shift --out $R/ekfac-shift-0.003
run tekfac-shift-0.003      $R $c --optimizer tekfac --damping 0.003 --damping-rule factored-shift --out $R/tekfac-shift-0.003
