#!/bin/bash
# The tracker on the small MLP 49-16-10 (Fashion-MNIST training images pooled 4×4), §5a's
# optimizer settings (lr 0.001, batch 128, momentum 0.9, sampled Fisher, intervals 10/100/10):
# 936 steps, a probe of 256 training images every 78 steps. Build 73a47bd (docs/RESULTS.md §6e).
# (a) the exact natural gradient trains (additive λ 0.0009, unaffected by the rule), so the three
#     runs probe identical weights: the four approximations fitted with each damping rule;
# (b) the running curvature of K-FAC and EKFAC as trained in §5a and with the shift.
. "$(dirname "$0")/issue18-common.sh"
bin=${bin:-/work/runs-track/bin/tekfac-73a47bd}
R=${out:-/work/runs-track/track2}
c="inspect --dataset fashion-mnist --model mlp --hidden 16 --lr 0.001 --momentum 0.9 --batch-size 128 --steps 936 --every 78 --probe-size 256 --seed 0"
for rule in own factored-shift additive; do
  run exact-0.0009-$rule $R $c --optimizer exact --damping 0.0009 --damping-rule $rule --out $R/exact-0.0009-$rule
done
run kfac-own-0.0009     $R $c --optimizer kfac   --damping 0.0009 --out $R/kfac-own-0.0009
run tkfac-own-0.0009    $R $c --optimizer tkfac  --damping 0.0009 --out $R/tkfac-own-0.0009
run ekfac-own-0.003     $R $c --optimizer ekfac  --damping 0.003  --out $R/ekfac-own-0.003
run tekfac-own-0.003    $R $c --optimizer tekfac --damping 0.003  --out $R/tekfac-own-0.003
run ekfac-shift-0.0009  $R $c --optimizer ekfac  --damping 0.0009 --damping-rule factored-shift --out $R/ekfac-shift-0.0009
run tekfac-shift-0.0009 $R $c --optimizer tekfac --damping 0.0009 --damping-rule factored-shift --out $R/tekfac-shift-0.0009
run ekfac-own-0.0009    $R $c --optimizer ekfac  --damping 0.0009 --out $R/ekfac-own-0.0009
run kfac-add-0.003      $R $c --optimizer kfac   --damping 0.003  --damping-rule additive --out $R/kfac-add-0.003
run exact-0.003         $R $c --optimizer exact  --damping 0.003  --out $R/exact-0.003
