#!/bin/bash
# Session 2026-11-29 (3): AE grid extension past the top lr / low λ edges (docs/RESULTS.md §5b).
set -u
export TEKFAC_DATA_DIR=/work/shared/data
bin=/work/runs/tekfac-cmp
root=/work/runs/grid/ae
log=$root/grid.log
echo "# extension 2 start $(date -u +%FT%TZ) binary md5 $(md5sum $bin | cut -c1-32) COMMIT $(cat /work/runs/COMMIT-cmp)" >> $log
common="--dataset mnist --model autoencoder --epochs 1 --batch-size 128 --seed 0 --momentum 0.9 --schedule constant --threads 2 --quiet"
name=first-order-3
echo "# $(date -u +%T) $name (extension 2): $bin compare $common --optimizers sgd --lr-for sgd=0.5 --out $root/$name" >> $log
nice -n 10 $bin compare $common --optimizers sgd --lr-for sgd=0.5 --out $root/$name > $root/$name.out 2>&1
status=$?; echo "# $(date -u +%T) $name exit $status" >> $log
bash /work/runs/grid/extend.sh ae 0.1 0.1 0.1 0.03 0.03 0.03
echo "# extension 2 done $(date -u +%FT%TZ)" >> $log
# (appended after the first points finished; run by hand) SGD was again best at the top edge:
#   first-order-4: same command with --lr-for sgd=1.5; first-order-5: --lr-for sgd=5
