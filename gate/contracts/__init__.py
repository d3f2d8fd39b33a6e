"""Contracts derived from and verified against a base model directory.

``init_contract`` writes a contract from a base (``gate contract init``);
``verify_against_base`` lists every fact where a contract and a base disagree
(``gate contract verify``, and ``gate check --base``); ``read_base_facts`` is what
both read. The contract model itself is :mod:`gate.contract`.

Example::

    from gate.contracts import init_contract, verify_against_base

    init_contract(Path("my-base"), Path("contracts/my-base.yaml"))
    for m in verify_against_base(Contract.from_yaml(Path("contracts/my-base.yaml")), Path("my-base")):
        print(m.field, m.message)
"""

from __future__ import annotations

from gate.contracts._facts import BaseFacts, ModuleFact, read_base_facts
from gate.contracts._init import DEFAULT_VLLM_VERSION, InitResult, draft_contract, init_contract
from gate.contracts._resolve import (
    BUILTIN_BASES,
    BUILTIN_CONTRACTS,
    register_base,
    registered_bases,
    resolve_base,
    resolve_contract,
    run_of,
)
from gate.contracts._verify import Mismatch, verify_against_base

__all__ = [
    "BUILTIN_BASES",
    "BUILTIN_CONTRACTS",
    "DEFAULT_VLLM_VERSION",
    "BaseFacts",
    "InitResult",
    "Mismatch",
    "ModuleFact",
    "draft_contract",
    "init_contract",
    "read_base_facts",
    "register_base",
    "registered_bases",
    "resolve_base",
    "resolve_contract",
    "run_of",
    "verify_against_base",
]
