#!/bin/bash
# Tuning grid for the optimizer comparison of issue 6 (docs/RESULTS.md §5).
# usage: grid.sh TASK   (TASK = fmlp | ae)
# Every configuration trains with `tekfac compare` from the same seed; criterion = mean training
# loss of the last grid epoch (the first GRID_EPOCHS epochs of the final run's schedule: constant lr).
set -u
task=$1
export TEKFAC_DATA_DIR=/work/shared/data
bin=/work/runs/tekfac-cmp
case $task in
  fmlp) common="--dataset fashion-mnist --model mlp --epochs 2";;
  ae)   common="--dataset mnist --model autoencoder --epochs 1";;
esac
common="$common --batch-size 128 --seed 0 --momentum 0.9 --schedule constant --threads 2 --quiet"
root=/work/runs/grid/$task
mkdir -p $root
log=$root/grid.log
echo "# start $(date -u +%FT%TZ) binary md5 $(md5sum $bin | cut -c1-32) COMMIT $(cat /work/runs/COMMIT-cmp)" >> $log
run() { # name args...
  local name=$1; shift
  [ -f $root/$name/results.csv ] && return
  echo "# $(date -u +%T) $name: $bin compare $common $* --out $root/$name" >> $log
  nice -n 10 $bin compare $common "$@" --out $root/$name > $root/$name.out 2>&1
  echo "# $(date -u +%T) $name exit $?" >> $log
}
# SGD and Adam: three learning rates each, a factor ~3 apart around the defaults.
for i in 0 1 2; do
  sgd=(0.015 0.05 0.15); adam=(3e-4 1e-3 3e-3)
  run first-order-$i --optimizers sgd,adam --lr-for sgd=${sgd[$i]},adam=${adam[$i]}
done
# Natural-gradient methods: lr × damping (the default λ and a tenth of it).
for lr in 0.003 0.01 0.03; do
  run ng-lr$lr-d1 --optimizers kfac,ekfac,tkfac,tekfac --lr $lr --damping-for kfac=0.03,tkfac=0.03,ekfac=0.1,tekfac=0.1
  run ng-lr$lr-d0.1 --optimizers kfac,ekfac,tkfac,tekfac --lr $lr --damping-for kfac=0.003,tkfac=0.003,ekfac=0.01,tekfac=0.01
done
echo "# done $(date -u +%FT%TZ)" >> $log
