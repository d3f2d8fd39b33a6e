"""Pinned environments of the shipped toolkits (one function per toolkit, host-dependent).

The pins are the versions measured to train SmolLM2 on CPU (see the README's
training section); everything else resolved into an environment is recorded by
its lock digest in each run record.
"""

from __future__ import annotations

from gate.envs import EnvSpec, Install, torch_requirement

__all__ = ["axolotl_env", "llamafactory_env", "unsloth_env"]

_COMMON_KEYS = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers", "safetensors")


def llamafactory_env(cuda: bool) -> EnvSpec:
    """LLaMA-Factory 0.9.5 on Python 3.11; it needs transformers <= 5.6."""
    return EnvSpec(
        name="trainer-llamafactory",
        python="3.11",
        installs=(
            Install(
                (
                    torch_requirement("2.13.0"),
                    "llamafactory==0.9.5",
                    "transformers==5.6.0",
                    "peft==0.18.1",
                    "trl==0.24.0",
                    "accelerate==1.11.0",
                    "datasets==4.0.0",
                    "tokenizers==0.22.2",
                    "safetensors==0.8.0",
                )
            ),
        ),
        # PyPI's torchvision breaks CPU torch on import; LLaMA-Factory imports torchaudio
        # unconditionally, whose compiled libs (built for another torch) fail to load.
        remove=() if cuda else ("torchvision",),
        remove_globs=() if cuda else ("torchaudio/lib/*.so",),
        key_packages=("llamafactory", *_COMMON_KEYS),
    )


def axolotl_env(cuda: bool) -> EnvSpec:
    """Axolotl 0.21.0 needs Python >= 3.12; PyPI only has CUDA torch for it (it also runs on CPU)."""
    return EnvSpec(
        name="trainer-axolotl",
        python="3.12",
        installs=(
            Install(
                (
                    "axolotl==0.21.0",
                    "torch==2.14.1",
                    "transformers==5.20.1",
                    "peft==0.21.2",
                    "trl==1.14.1",
                    "accelerate==1.15.0",
                    "datasets==5.0.1",
                    "tokenizers==0.23.3",
                    "safetensors==0.8.0",
                )
            ),
        ),
        key_packages=("axolotl", *_COMMON_KEYS),
    )


def unsloth_env(cuda: bool) -> EnvSpec:
    """Unsloth 2026.10.9 (FastLanguageModel + TRL's SFTTrainer)."""
    return EnvSpec(
        name="trainer-unsloth",
        python="3.11",
        installs=(
            Install(
                (
                    torch_requirement("2.13.0"),
                    "unsloth==2026.10.9",
                    "unsloth-zoo==2026.10.9",
                    "transformers==5.17.0",
                    "peft==0.21.2",
                    "trl==1.15.0",
                    "accelerate==1.15.0",
                    "datasets==4.8.5",
                    "tokenizers==0.23.3",
                    "safetensors==0.8.0",
                )
            ),
        ),
        remove=() if cuda else ("torchvision",),
        key_packages=("unsloth", "unsloth-zoo", *_COMMON_KEYS),
    )
