#!/usr/bin/env bash
# Poll the detached H200 session (bench/gpu/h200_session.sh) for up to SECONDS, then copy what it has to $OUT.
#   bash .gpu/src/bench/gpu/h200_wait.sh SECONDS
limit=${1:-540}; top=${TOP:-/tmp/h200}; out=${OUT:-/tmp/h200-out}; mkdir -p "$out"
end=$(( $(date +%s) + limit ))
while [ ! -e $top/done ] && [ "$(date +%s)" -lt "$end" ]; do sleep 3; done
[ -e $top/done ] && echo "session done" || echo "session still running"
for f in steps.log throughput-h200.json session.log logs.tgz pilot-h200.json base.log; do
  [ -f "$top/out/$f" ] && cp "$top/out/$f" "$out/"
done
tail -c 2500 "$top/out/steps.log" 2>/dev/null; echo; grep -v "^gate eval: warning\|^max_regression\|^and 80%\|━" "$top/out/session.log" 2>/dev/null | tail -c 6000
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader 2>/dev/null
