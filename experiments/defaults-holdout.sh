#!/usr/bin/env bash
# Issue 15 §1: choosing `tekfac train`'s defaults for the Fashion-MNIST MLP on a hold-out split,
# never on the test set (docs/RESULTS.md §7).
#
# Four candidates, weight decay {0, 5e-4} × schedule {constant, cosine}, each a 10-epoch TEKFAC
# run with every other flag at its default (lr 0.01, λ 0.1, momentum 0.9, batch 128, seed 0),
# trained on the first 50,000 training images and scored on the last 10,000 (`--holdout 10000`).
# The winner is the candidate with the highest epoch-10 validation accuracy (ties: lower
# validation loss); `select` prints the table. Then, once, the default command on the test set:
#
#   bash experiments/defaults-holdout.sh select      # the four hold-out runs, then the table
#   bash experiments/defaults-holdout.sh test        # `tekfac train --dataset fashion-mnist
#                                                    #  --optimizer tekfac --epochs 10`
#
# `bin=` names the tekfac binary (default target/release/tekfac), `out=` the output folder.
# Runs are niced 19, one at a time; a run is paused (SIGSTOP) while /tmp/tekfac-quiet exists
# (the shared machine's quiet periods for benchmarks) and resumed (SIGCONT) after. Training is
# deterministic, so a pause changes only the wall-clock seconds. A run whose NAME.done exists
# is skipped.
set -u
bin=${bin:-target/release/tekfac}
out=${out:-runs/defaults-holdout}
export TEKFAC_DATA_DIR=${TEKFAC_DATA_DIR:-/work/shared/data}

busy() { [ -e /tmp/tekfac-quiet ]; }

# run NAME ARGS...: `$bin train ARGS --out $out/NAME`, log in $out/NAME.log.
run() {
  local name=$1
  shift
  mkdir -p "$out"
  if [ -f "$out/$name.done" ]; then return; fi
  while busy; do sleep 20; done
  echo "$(date -u +%T) start $name $*"
  nice -n 19 "$bin" train "$@" --quiet --out "$out/$name" >"$out/$name.log" 2>&1 &
  local pid=$! state
  while state=$(ps -o stat= -p "$pid") && [[ $state != Z* ]]; do
    if busy; then
      kill -STOP "$pid"
      echo "$(date -u +%T) paused $name"
      while busy; do sleep 20; done
      kill -CONT "$pid"
      echo "$(date -u +%T) resumed $name"
    fi
    sleep 5
  done
  wait "$pid"
  local rc=$?
  echo "$rc" >"$out/$name.done"
  echo "$(date -u +%T) end $name rc=$rc"
}

# The epoch-10 row of each run: validation loss and accuracy (and the accuracy by epoch), with
# metrics.csv's columns found by their names in its header.
table() {
  echo "| weight decay | schedule | validation accuracy by epoch (1–10), % | validation loss | validation accuracy |"
  echo "|---|---|---|---|---|"
  for wd in 0 5e-4; do
    for s in constant cosine; do
      awk -F, -v wd="$wd" -v s="$s" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        $col["kind"] == "epoch" {
          acc = acc sprintf("%s%.2f", acc == "" ? "" : " ", 100 * $col["test_accuracy"])
          if ($col["epoch"] == 10) { loss = $col["test_loss"]; last = $col["test_accuracy"] }
        }
        END { printf "| %s | %s | %s | %.4f | %.2f %% |\n", wd, s, acc, loss, 100 * last }' \
        "$out/wd$wd-$s/metrics.csv"
    done
  done
}

case ${1:-select} in
select)
  for wd in 0 5e-4; do
    for s in constant cosine; do
      run "wd$wd-$s" --dataset fashion-mnist --optimizer tekfac --epochs 10 --holdout 10000 \
        --weight-decay "$wd" --schedule "$s"
    done
  done
  table
  ;;
test)
  run default-test --dataset fashion-mnist --optimizer tekfac --epochs 10
  grep '^epoch' "$out/default-test/metrics.csv"
  ;;
*)
  echo "usage: $0 [select|test]" >&2
  exit 2
  ;;
esac
