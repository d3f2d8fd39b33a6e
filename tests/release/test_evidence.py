"""Evidence bound to the artifact: contract digest over its files, run.json matched, own gate list, paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import BaseModel

from gate import bundle as layout
from gate.contract import Contract
from gate.contract_files import ContractDir, ContractFile, references
from gate.errors import GateFailure, InputError
from gate.evidence import PathScrubber, normalise_adapter
from gate.pipeline import ReleaseRequest, run_release
from gate.resources import contracts_dir, default_contract, examples_dir
from gate.signing import SigningConfig, TrustPolicy, sign_bundle
from gate.verify import verify_bundle
from tests.fixtures.run_records import write_run_record
from tests.release.conftest import BundleFactory, KeyPair, write_lora_adapter


def _policy(keys: dict[str, KeyPair]) -> TrustPolicy:
    return TrustPolicy(method="key", public_key=keys["release"].public)


def _contract_copy(root: Path) -> Path:
    """The default contract with its template and eval tasks copied beside it (a contract we may edit)."""
    root.mkdir(parents=True)
    text = (contracts_dir() / "smollm2-vllm.yaml").read_text()
    text = text.replace("tasks_dir: ../examples/smollm2/eval", "tasks_dir: eval")
    (root / "contract.yaml").write_text(text)
    shutil.copyfile(contracts_dir() / "smollm2-chat.jinja", root / "smollm2-chat.jinja")
    shutil.copytree(
        examples_dir() / "smollm2" / "eval", root / "eval", ignore=shutil.ignore_patterns("__pycache__")
    )
    return root / "contract.yaml"


# --- the contract digest covers what the contract references ----------------------------------------------


def test_contract_digest_changes_when_an_eval_data_file_changes(tmp_path: Path) -> None:
    path = _contract_copy(tmp_path / "c")
    before = Contract.from_yaml(path)
    before_sha = before.sha256
    data = tmp_path / "c" / "eval" / "data" / "capitals_terse.jsonl"
    data.write_text(data.read_text().replace("France", "Belgium", 1))
    after = Contract.from_yaml(path)
    assert after.yaml_sha256 == before.yaml_sha256
    assert after.sha256 != before_sha
    assert "eval.tasks_dir/data/capitals_terse.jsonl" in after.referenced_files()
    assert "prompt.chat_template_file/smollm2-chat.jinja" in after.referenced_files()


def test_every_reference_typed_field_is_found_by_the_one_walker() -> None:
    class Task(BaseModel):
        data_file: ContractFile | None = None

    class Spec(BaseModel):
        tasks_dir: ContractDir
        tasks: list[Task]
        extra_files: list[ContractFile] = []

    spec = Spec(tasks_dir="t", tasks=[Task(), Task(data_file="d.jsonl")], extra_files=["a.txt"])
    found = {(r.field, r.kind, r.value) for r in references(spec)}
    assert found == {
        ("tasks_dir", "dir", "t"),
        ("tasks.1.data_file", "file", "d.jsonl"),
        ("extra_files.0", "file", "a.txt"),
    }


def test_bundle_whose_eval_data_changed_after_signing_is_refused_even_when_re_signed(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair]
) -> None:
    bundle = make_bundle(seed=1)
    expected = Contract.from_yaml(default_contract()).sha256
    verify_bundle(str(bundle), _policy(release_keys), expected_contract_sha256=expected)  # accepted as built
    data = bundle / layout.CONTRACT_FILES / "eval.tasks_dir" / "data" / "capitals_terse.jsonl"
    data.write_text(data.read_text().replace("France", "Belgium", 1))
    with pytest.raises(GateFailure, match=r"signature verification failed: .*capitals_terse\.jsonl"):
        verify_bundle(str(bundle), _policy(release_keys), expected_contract_sha256=expected)
    # The trusted key signs the edited files: the signature holds, the contract digest does not.
    sign_bundle(bundle, SigningConfig(method="key", private_key=release_keys["release"].private))
    with pytest.raises(GateFailure, match="contract digest recomputed from the bundled contract"):
        verify_bundle(str(bundle), _policy(release_keys), expected_contract_sha256=expected)


def test_bundle_missing_a_referenced_contract_file_is_refused(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair]
) -> None:
    bundle = make_bundle(seed=2)
    (bundle / layout.CONTRACT_FILES / "eval.tasks_dir" / "smollm2_mc.yaml").unlink()
    sign_bundle(bundle, SigningConfig(method="key", private_key=release_keys["release"].private))
    with pytest.raises(GateFailure, match="a referenced file changed"):
        verify_bundle(
            str(bundle),
            _policy(release_keys),
            expected_contract_sha256=Contract.from_yaml(default_contract()).sha256,
        )


def test_contract_pointing_at_a_symlinked_eval_file_is_one_clear_error(tmp_path: Path) -> None:
    path = _contract_copy(tmp_path / "c")
    target = tmp_path / "c" / "eval" / "data" / "smollm2_mc.jsonl"
    shutil.move(target, tmp_path / "elsewhere.jsonl")
    target.symlink_to(tmp_path / "elsewhere.jsonl")
    with pytest.raises(InputError, match=r"contract field eval\.tasks_dir: .*smollm2_mc\.jsonl is a symlink"):
        _ = Contract.from_yaml(path).sha256


# --- a verdict carries its own required gates ---------------------------------------------------------------


def test_verdict_with_the_older_gate_list_still_verifies_after_a_gate_is_added(
    make_bundle: BundleFactory, release_keys: dict[str, KeyPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(seed=3)
    monkeypatch.setattr(layout, "REQUIRED_GATES", (*layout.REQUIRED_GATES, "lint"))
    result = verify_bundle(
        str(bundle),
        _policy(release_keys),
        expected_contract_sha256=Contract.from_yaml(default_contract()).sha256,
    )
    assert result.verdict.required_gates == ("check", "smoke", "eval")


def test_verdict_requiring_a_gate_that_did_not_run_is_refused(make_bundle: BundleFactory) -> None:
    bundle = make_bundle(seed=4, required_gates=("check", "smoke", "eval", "lint"))
    verdict = layout.read_verdict(bundle)
    data = verdict.model_dump(mode="json")
    data["gates"] = [g for g in data["gates"] if g["name"] != "lint"]
    assert layout.Verdict.model_validate(data).problems() == ["gate 'lint' did not run"]


def test_verdict_that_drops_a_version_1_gate_is_refused(make_bundle: BundleFactory) -> None:
    bundle = make_bundle(seed=5, required_gates=("check", "smoke"))
    assert layout.read_verdict(bundle).problems() == ["verdict does not require gate 'eval'"]


# --- run.json is validated and matched at release -----------------------------------------------------------


def _run_dir(root: Path) -> Path:
    write_lora_adapter(root / "adapter", seed=9)
    write_run_record(root)
    return root


def _release(run: Path, tmp_path: Path, keys: dict[str, KeyPair]) -> None:
    run_release(
        ReleaseRequest(
            run_dir=run,
            contract_path=default_contract(),
            target=f"oci-layout://{tmp_path / 'layout'}:v1",
            signing=SigningConfig(method="key", private_key=keys["release"].private),
            out_dir=tmp_path / "bundle",
        )
    )


def test_release_refuses_a_run_whose_adapter_differs_from_run_json_naming_the_file(
    tmp_path: Path, release_keys: dict[str, KeyPair]
) -> None:
    run = _run_dir(tmp_path / "run")
    recorded = json.loads((run / "run.json").read_text())["adapter"]["files"]["adapter_model.safetensors"]
    write_lora_adapter(run / "adapter", seed=10)  # other weights after training
    with pytest.raises(InputError) as e:
        _release(run, tmp_path, release_keys)
    assert e.value.message.startswith("adapter file adapter_model.safetensors has sha256 ")
    assert f"run.json records {recorded['sha256']}" in e.value.message
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "layout").exists()


def test_release_refuses_a_run_json_outside_the_run_schema(
    tmp_path: Path, release_keys: dict[str, KeyPair]
) -> None:
    run = _run_dir(tmp_path / "run")
    record = json.loads((run / "run.json").read_text())
    record["toolkit"] = {"name": "x"}  # no version
    (run / "run.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"does not follow contracts/run\.schema\.json: toolkit\.version"):
        _release(run, tmp_path, release_keys)


def test_release_refuses_an_adapter_file_run_json_does_not_list(
    tmp_path: Path, release_keys: dict[str, KeyPair]
) -> None:
    run = _run_dir(tmp_path / "run")
    (run / "adapter" / "added_later.json").write_text("{}")
    with pytest.raises(InputError, match=r"adapter file added_later\.json is not in run\.json"):
        _release(run, tmp_path, release_keys)


# --- no absolute machine paths ------------------------------------------------------------------------


def test_scrubber_replaces_machine_paths_and_leaves_urls_and_relative_paths(tmp_path: Path) -> None:
    staging = tmp_path / ".b.staging-x1" / "bundle"
    scrub = PathScrubber.for_release({staging: "<bundle>", tmp_path / "work": "<work>"})
    got = scrub.json(
        {
            "report": f"{staging}/gate/reports/smoke.json",
            "log": f"see {tmp_path}/work/logs/vllm.log for details",
            "home": f"{Path.home()}/.config/x",
            "url": "http://127.0.0.1:8000/v1/completions",
            "relative": "data/train.jsonl",
            "other": "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "ratio": "3/4 passed",
        }
    )
    assert got == {
        "report": "<bundle>/gate/reports/smoke.json",
        "log": "see <work>/logs/vllm.log for details",
        "home": "~/.config/x",
        "url": "http://127.0.0.1:8000/v1/completions",
        "relative": "data/train.jsonl",
        "other": "<local>/libc.so.6",
        "ratio": "3/4 passed",
    }


def test_local_base_path_in_adapter_config_becomes_the_contract_base_name_as_a_recorded_fix(
    tmp_path: Path,
) -> None:
    adapter = tmp_path / "adapter"
    write_lora_adapter(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "models" / "smollm2")
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    (adapter / "README.md").write_text(f"---\nbase_model: {tmp_path}/models/smollm2\n---\n")
    fixes = normalise_adapter(adapter, "SmolLM2-135M-Instruct", PathScrubber.for_release({}))
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "SmolLM2-135M-Instruct"
    )
    readme = (adapter / "README.md").read_text()
    assert str(tmp_path) not in readme and "base_model: <tmp>/" in readme
    assert [f.split(":")[0] for f in fixes] == ["adapter_config.json", "README.md"]
    assert "set to the contract's base 'SmolLM2-135M-Instruct'" in fixes[0]
