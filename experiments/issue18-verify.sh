#!/bin/bash
# Issue 18's first probe, re-run (docs/RESULTS.md §6b, right column): Fashion-MNIST MLP,
# 2 epochs, lr 0.001, the full training set; build f26f457. One run at a time, niced.
set -u
bin=${bin:-/work/runs-track/bin/tekfac-f26f457}
out=${out:-/work/runs-track/verify}
export TEKFAC_DATA_DIR=${TEKFAC_DATA_DIR:-/work/shared/data}
common="--dataset fashion-mnist --model mlp --lr 0.001 --momentum 0.9 --epochs 2 --batch-size 128 --seed 0 --threads 2 --quiet"
run() { name=$1; shift
  while ! flock -n /tmp/tekfac-bench.lock true; do sleep 30; done
  echo "$(date +%T) start $name $*"
  nice -n 19 $bin train $common "$@" --out $out/$name > $out/$name.log 2>&1
  echo "$(date +%T) end $name rc=$?"
}
mkdir -p $out
run kfac-d0.0009 --optimizer kfac --damping 0.0009
run tkfac-d0.0009 --optimizer tkfac --damping 0.0009
run tekfac-d0.003 --optimizer tekfac --damping 0.003
run ekfac-d0.003 --optimizer ekfac --damping 0.003
run tekfac-d0.003-emp --optimizer tekfac --damping 0.003 --fisher empirical
run tekfac-d0.003-scale1 --optimizer tekfac --damping 0.003 --scale-interval 1
run tekfac-d0.003-eig20 --optimizer tekfac --damping 0.003 --eigen-interval 20
run tekfac-d0.001 --optimizer tekfac --damping 0.001
