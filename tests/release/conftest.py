"""Fixtures of the release tests: real keys, a real CA chain, real adapter bundles."""

from __future__ import annotations

import datetime
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from gate import bundle as layout
from gate.contract import Contract
from gate.digests import files_digest
from gate.resources import default_contract
from gate.signing import SigningConfig, generate_key, sign_bundle
from tests.fixtures.run_records import run_record


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


@pytest.fixture(scope="session")
def release_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    """Two EC P-256 key pairs: the release key and an unexpected one."""
    root = tmp_path_factory.mktemp("keys")
    keys = {}
    for name in ("release", "intruder"):
        generate_key(root / f"{name}.key", root / f"{name}.pub")
        keys[name] = KeyPair(root / f"{name}.key", root / f"{name}.pub")
    return keys


@dataclass(frozen=True)
class CertChain:
    ca: Path
    release_key: Path
    release_cert: Path
    other_key: Path
    other_cert: Path
    release_identity: str
    other_identity: str


@pytest.fixture(scope="session")
def cert_chain(tmp_path_factory: pytest.TempPathFactory) -> CertChain:
    """A locally generated CA and two code-signing leaves it issued (different identities)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    root = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    (root / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(name: str, email: str) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        kp, cp = root / f"{name}.key", root / f"{name}.pem"
        kp.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return kp, cp

    rk, rc = leaf("release", "release@gate.example")
    ok, oc = leaf("other", "other@gate.example")
    return CertChain(root / "ca.pem", rk, rc, ok, oc, "release@gate.example", "other@gate.example")


def write_lora_adapter(adapter: Path, *, rank: int = 8, seed: int = 0, layers: int = 30) -> None:
    """A PEFT LoRA adapter for SmolLM2 (q_proj, v_proj), real safetensors with seeded weights."""
    rng = np.random.default_rng(seed)
    adapter.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    shapes = {"q_proj": (576, 576), "v_proj": (192, 576)}
    for i in range(layers):
        for mod, (out_f, in_f) in shapes.items():
            prefix = f"base_model.model.model.layers.{i}.self_attn.{mod}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((rank, in_f), dtype=np.float32) * 0.01
            tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((out_f, rank), dtype=np.float32) * 0.01
    save_file(tensors, str(adapter / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "SmolLM2-135M-Instruct",
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "target_modules": sorted(shapes),
        "bias": "none",
        "use_dora": False,
        "use_rslora": False,
        "modules_to_save": None,
    }
    (adapter / "adapter_config.json").write_text(json.dumps(config, indent=2))


BundleFactory = Callable[..., Path]


@pytest.fixture
def make_bundle(tmp_path: Path, release_keys: dict[str, KeyPair]) -> BundleFactory:
    """Build a bundle laid out by gate.bundle from real files, with gate reports and a verdict.

    ``failed_gate`` writes a verdict in which that gate failed; ``sign`` signs it
    with the release key (or the given SigningConfig). ``awaiting_approval`` stages
    it as a release under an approval-required contract leaves it: gated, unsigned,
    stopped at ``approval``. ``required_gates`` writes a verdict of another gate list.
    """
    counter = [0]

    def build(
        *,
        seed: int = 0,
        failed_gate: str | None = None,
        sign: bool | SigningConfig = True,
        contract_path: Path | None = None,
        awaiting_approval: bool = False,
        required_gates: tuple[str, ...] = layout.REQUIRED_GATES,
    ) -> Path:
        counter[0] += 1
        root = tmp_path / f"bundle{counter[0]}"
        write_lora_adapter(root, seed=seed)
        contract_path = contract_path or default_contract()
        contract = Contract.from_yaml(contract_path)
        (root / "gate" / "reports").mkdir(parents=True)
        shutil.copyfile(contract_path, root / layout.CONTRACT)
        for name, path in contract.referenced_files().items():
            (root / layout.CONTRACT_FILES / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, root / layout.CONTRACT_FILES / name)
        (root / layout.CHAT_TEMPLATE).write_text(contract.prompt.chat_template)
        (root / layout.RUN_RECORD).write_text(json.dumps(run_record(root, name=f"run-{seed}")))
        gates = []
        stopped = None
        for name in required_gates:
            status = "failed" if name == failed_gate else "passed"
            report = {"version": "1.0", "gate": name, "passed": status == "passed", "seed": seed}
            rel = layout.REPORTS.get(name, f"gate/reports/{name}.json")
            (root / rel).write_text(json.dumps(report))
            gates.append(layout.GateResult(name=name, status=status, summary=f"{name} {status}", report=rel))
            if status == "failed":
                stopped = name
                break
        (root / layout.EVAL_MARKDOWN).write_text(
            "| metric | base | adapter |\n|---|---|---|\n| exact_match | 0.0 | 0.8 |\n"
        )
        if awaiting_approval and stopped is None:
            stopped = "approval"
        verdict = layout.Verdict(
            passed=stopped is None,
            stopped_at=stopped,
            reason=f"gate {stopped} failed" if stopped else None,
            required_gates=required_gates,
            approval_required=awaiting_approval,
            gates=tuple(gates),
            contract=layout.ContractRef(
                name=contract.name, version=contract.metadata.version, sha256=contract.sha256
            ),
            adapter_digest=files_digest(root, ["adapter_config.json", "adapter_model.safetensors"]),
            base_model={"name": contract.base_model.name},
            created_at="2026-11-28T12:00:00+00:00",
        )
        digest = layout.staged_digest(layout.staged_files(root), verdict)
        verdict = verdict.model_copy(update={"staged_digest": digest})
        (root / layout.VERDICT).write_text(verdict.model_dump_json(indent=2))
        if awaiting_approval:
            return root  # staged: a person's approval signs it
        if sign is True:
            sign_bundle(root, SigningConfig(method="key", private_key=release_keys["release"].private))
        elif isinstance(sign, SigningConfig):
            sign_bundle(root, sign)
        return root

    return build
