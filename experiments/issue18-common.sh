# Shared by the issue-18 scripts: one run at a time, niced, never inside the benchmark lock nor
# during a quiet period (/tmp/tekfac-quiet); a run whose NAME.done exists is skipped.
export TEKFAC_DATA_DIR=${TEKFAC_DATA_DIR:-/work/shared/data}
wait_for_bench() {
  while [ -e /tmp/tekfac-quiet ] || ! flock -n /tmp/tekfac-bench.lock true; do sleep 20; done
}
# run NAME OUTROOT ARGS...: one `$bin ARGS` invocation, its log in OUTROOT/NAME.log.
run() {
  local name=$1 root=$2; shift 2
  mkdir -p "$root"
  if [ -f "$root/$name.done" ]; then return; fi
  wait_for_bench
  echo "$(date +%T) start $name $*"
  nice -n 19 "$bin" "$@" > "$root/$name.log" 2>&1
  local rc=$?
  echo "$rc" > "$root/$name.done"
  echo "$(date +%T) end $name rc=$rc"
}
