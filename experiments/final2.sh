#!/bin/bash
# Final AE runs after the second grid extension (docs/RESULTS.md §5b), on an otherwise idle machine.
set -u
export TEKFAC_DATA_DIR=/work/shared/data
bin=/work/runs/tekfac-cmp2
log=/work/runs/final/run.log
echo "# ae2 start $(date -u +%FT%TZ) binary md5 $(md5sum $bin | cut -c1-32) COMMIT $(cat /work/runs/COMMIT-cmp2)" >> $log
common="--batch-size 128 --seed 0 --momentum 0.9 --schedule constant --threads 2 --quiet"
$bin compare --dataset mnist --model autoencoder --epochs 2 $common \
  --lr-for sgd=5,adam=0.001,kfac=0.1,ekfac=0.1,tkfac=0.1,tekfac=0.1 \
  --damping-for kfac=0.003,ekfac=0.003,tkfac=0.003,tekfac=0.003 \
  --out /work/runs/final/ae2 > /work/runs/final/ae2.out 2>&1
status=$?; echo "# $(date -u +%T) ae2 exit $status" >> $log
