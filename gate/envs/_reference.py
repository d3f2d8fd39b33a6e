"""The transformers + PEFT reference environment, below every layer that runs in it.

The smoke gate's parity reference and the warm reference (:mod:`gate.serving`)
and ``contract init``'s rendering of chat fixtures with the base's own tokenizer
(:mod:`gate.contracts`) all run there, so it lives with the environments rather
than in any one of them.
"""

from __future__ import annotations

from gate.envs._host import torch_requirement
from gate.envs._spec import EnvSpec, Install

__all__ = ["reference_env_spec"]


def reference_env_spec() -> EnvSpec:
    """transformers + PEFT on CPU torch: the reference that greedy parity is measured against."""
    return EnvSpec(
        name="reference",
        python="3.11",
        installs=(
            Install(
                (
                    torch_requirement("2.13.0"),
                    "transformers==5.24.0",
                    "peft==0.21.2",
                    "safetensors==0.8.0",
                    "numpy==2.4.6",
                )
            ),
        ),
        remove=("torchvision", "torchaudio"),
        key_packages=("torch", "transformers", "peft"),
        # The reference runs on the CPU even on a GPU host: parity is about the
        # adapter's arithmetic, and CPU float32 is the most deterministic baseline.
        run_env=(("CUDA_VISIBLE_DEVICES", ""), ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")),
    )
