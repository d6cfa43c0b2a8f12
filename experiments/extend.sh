#!/bin/bash
# Extension of the tuning grid where the best point fell on its edge (lowest lr, lowest λ).
# usage: extend.sh TASK LR DAMPING-SCALE ...  (pairs; DAMPING-SCALE multiplies the defaults 0.03 / 0.1)
set -u
task=$1; shift
export TEKFAC_DATA_DIR=/work/shared/data
bin=/work/runs/tekfac-cmp
case $task in
  fmlp) common="--dataset fashion-mnist --model mlp --epochs 2";;
  ae)   common="--dataset mnist --model autoencoder --epochs 1";;
esac
common="$common --batch-size 128 --seed 0 --momentum 0.9 --schedule constant --threads 2 --quiet"
root=/work/runs/grid/$task
log=$root/grid.log
while [ $# -ge 2 ]; do
  lr=$1; s=$2; shift 2
  name=ng-lr$lr-d$s
  [ -f $root/$name/results.csv ] && continue
  k=$(python3 -c "print(f'{0.03*$s:g}')"); e=$(python3 -c "print(f'{0.1*$s:g}')")
  echo "# $(date -u +%T) $name (extension): $bin compare $common --optimizers kfac,ekfac,tkfac,tekfac --lr $lr --damping-for kfac=$k,tkfac=$k,ekfac=$e,tekfac=$e --out $root/$name" >> $log
  nice -n 10 $bin compare $common --optimizers kfac,ekfac,tkfac,tekfac --lr $lr --damping-for kfac=$k,tkfac=$k,ekfac=$e,tekfac=$e --out $root/$name > $root/$name.out 2>&1
  status=$?
  echo "# $(date -u +%T) $name exit $status" >> $log
done
