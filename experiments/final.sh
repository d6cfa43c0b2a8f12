#!/bin/bash
# Final runs of the optimizer comparison (docs/RESULTS.md §5), one at a time on an otherwise idle machine.
set -u
export TEKFAC_DATA_DIR=/work/shared/data
bin=/work/runs/tekfac-cmp2
log=/work/runs/final/run.log
echo "# start $(date -u +%FT%TZ) binary md5 $(md5sum $bin | cut -c1-32) COMMIT $(cat /work/runs/COMMIT-cmp2)" >> $log
common="--batch-size 128 --seed 0 --momentum 0.9 --schedule constant --threads 2 --quiet"
$bin compare --dataset fashion-mnist --model mlp --epochs 5 $common \
  --lr-for sgd=0.05,adam=0.001,kfac=0.001,ekfac=0.001,tkfac=0.001,tekfac=0.001 \
  --damping-for kfac=0.0009,ekfac=0.003,tkfac=0.0009,tekfac=0.003 \
  --out /work/runs/final/fmlp > /work/runs/final/fmlp.out 2>&1
status=$?; echo "# $(date -u +%T) fmlp exit $status" >> $log
$bin compare --dataset mnist --model autoencoder --epochs 2 $common \
  --lr-for sgd=0.15,adam=0.001,kfac=0.03,ekfac=0.03,tkfac=0.03,tekfac=0.03 \
  --damping-for kfac=0.003,ekfac=0.01,tkfac=0.003,tekfac=0.01 \
  --out /work/runs/final/ae > /work/runs/final/ae.out 2>&1
status=$?; echo "# $(date -u +%T) ae exit $status" >> $log
