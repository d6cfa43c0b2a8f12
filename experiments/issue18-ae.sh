#!/bin/bash
# docs/RESULTS.md §6f: the MNIST deep autoencoder from Martens' sparse start, §5b's settings
# (lr 0.1, λ 0.003, batch 128, momentum 0.9, constant rate, sampled Fisher, seed 0), 1 epoch on
# the hold-out split; build 95e9cfc.
. "$(dirname "$0")/issue18-common.sh"
bin=${bin:-/work/runs-track/bin/tekfac-95e9cfc}
A=${out:-/work/runs-track/ae-holdout}
a="train --dataset mnist --model autoencoder --holdout 10000 --lr 0.1 --damping 0.003 --momentum 0.9 --batch-size 128 --seed 0 --threads 2 --quiet --epochs 1 --init sparse"
run sparse-kfac-own     $A $a --optimizer kfac --out $A/sparse-kfac-own
run sparse-ekfac-shift  $A $a --optimizer ekfac --damping-rule factored-shift --out $A/sparse-ekfac-shift
run sparse-tekfac-shift $A $a --optimizer tekfac --damping-rule factored-shift --out $A/sparse-tekfac-shift
run sparse-ekfac-own    $A $a --optimizer ekfac --out $A/sparse-ekfac-own
run sparse-tekfac-own   $A $a --optimizer tekfac --out $A/sparse-tekfac-own
