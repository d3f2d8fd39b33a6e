#!/usr/bin/env bash
# Poll the detached H200 session (bench/gpu/h200_session.sh) for up to SECONDS, then copy what it has to $OUT.
#   bash /tmp/h200/wait.sh SECONDS     (the session start copies this script to /tmp/h200/wait.sh)
limit=${1:-540}; top=/tmp/h200; out=${OUT:-/tmp/h200-out}; mkdir -p "$out"
end=$(( $(date +%s) + limit ))
while [ ! -e $top/done ] && [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
[ -e $top/done ] && echo "session done" || echo "session still running"
for f in steps.log throughput-h200.json pilot-h200.json pilot.md session.log logs.tgz; do
  [ -f "$top/out/$f" ] && cp "$top/out/$f" "$out/"
done
tail -c 3000 "$top/out/steps.log" 2>/dev/null; echo; tail -c 5000 "$top/out/session.log" 2>/dev/null
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader 2>/dev/null
