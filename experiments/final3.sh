#!/bin/bash
# Probe (docs/RESULTS.md §5b): the extended grid's choices, unchanged, with Martens' sparse
# initialisation instead of the preset's Xavier. Not tuned for this init. Alone on the machine.
set -u
export TEKFAC_DATA_DIR=/work/shared/data
bin=/work/runs/tekfac-s
log=/work/runs/final/run.log
echo "# ae-sparse start $(date -u +%FT%TZ) binary md5 $(md5sum $bin | cut -c1-32) COMMIT $(cat /work/runs/COMMIT-s)" >> $log
common="--batch-size 128 --seed 0 --momentum 0.9 --schedule constant --threads 2 --quiet"
$bin compare --dataset mnist --model autoencoder --init sparse --epochs 2 $common \
  --lr-for sgd=5,adam=0.001,kfac=0.1,ekfac=0.1,tkfac=0.1,tekfac=0.1 \
  --damping-for kfac=0.003,ekfac=0.003,tkfac=0.003,tekfac=0.003 \
  --out /work/runs/final/ae-sparse > /work/runs/final/ae-sparse.out 2>&1
status=$?; echo "# $(date -u +%T) ae-sparse exit $status" >> $log
