"""Contracts: one versioned YAML file per serving target.

A contract pins everything a fine-tuned adapter must agree with before it is
handed to a server: the base model (identity digest, architecture, linear
shapes), the serving runtime (vLLM version range, LoRA limits), adapter rules,
the prompt contract (chat template, its digest, EOS ids, rendering fixtures),
smoke prompts, evaluation thresholds, the signing identity policy, the publish
target and whether a person must approve.

Example::

    from gate.contract import Contract
    from gate.resources import default_contract

    contract = Contract.from_yaml(default_contract())
    print(contract.serving.max_lora_rank, contract.sha256)

``python -m gate.contract --write-schema`` regenerates
``contracts/contract.schema.json`` from these models.
"""

from __future__ import annotations

from gate.contract._contract import MAX_CONTRACT_BYTES, SCHEMA_VERSION, Contract, Metadata, schema_json
from gate.contract._eval import EvalPlanning, EvalSpec, EvalTask
from gate.contract._prompt import Message, PromptSpec, RenderFixture
from gate.contract._release import Approval, Publish, Signing
from gate.contract._serving import (
    ALLOWED_MAX_LORA_RANKS,
    AdapterRules,
    BaseModelSpec,
    LoraSupport,
    MaxLoraRank,
    ModulePlacement,
    PolicyFeature,
    ServingSpec,
)
from gate.contract._smoke import SmokePrompt, SmokeSpec

__all__ = [
    "ALLOWED_MAX_LORA_RANKS",
    "MAX_CONTRACT_BYTES",
    "SCHEMA_VERSION",
    "AdapterRules",
    "Approval",
    "BaseModelSpec",
    "Contract",
    "EvalPlanning",
    "EvalSpec",
    "EvalTask",
    "LoraSupport",
    "MaxLoraRank",
    "Message",
    "Metadata",
    "ModulePlacement",
    "PolicyFeature",
    "PromptSpec",
    "Publish",
    "RenderFixture",
    "ServingSpec",
    "Signing",
    "SmokePrompt",
    "SmokeSpec",
    "schema_json",
]
