"""The pinned lm-eval environment (lm-eval runs there as a subprocess, never in gate's core)."""

from __future__ import annotations

from gate.envs import EnvSpec, Install

__all__ = ["lm_eval_env_spec"]


def lm_eval_env_spec() -> EnvSpec:
    """The pinned lm-eval environment: the API client models and a tokenizer, no torch."""
    return EnvSpec(
        name="lm-eval",
        python="3.11",
        installs=(Install(("lm-eval[api]==0.4.13", "transformers==5.24.0")),),
        key_packages=("lm-eval", "transformers", "datasets"),
        run_env=(
            ("HF_DATASETS_OFFLINE", "1"),
            ("HF_HUB_OFFLINE", "1"),
            ("TRANSFORMERS_OFFLINE", "1"),
            ("TOKENIZERS_PARALLELISM", "false"),
        ),
    )
