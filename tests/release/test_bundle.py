"""The bundle layout's safe readers and the OCI reference grammar."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gate.bundle import check_relpath, list_files, read_json
from gate.errors import InputError
from gate.oci import parse_ref
from gate.signing import SigningConfig, sign_bundle
from tests.release.conftest import KeyPair


@pytest.mark.parametrize(
    "name",
    ["../x", "/etc/passwd", "a/../b", "a//b", ".hidden", "a/.git/config", "a\\b", "", "x\x00y", "./a"],
)
def test_unsafe_bundle_paths_are_refused(name: str) -> None:
    with pytest.raises(InputError, match="unsafe path"):
        check_relpath(name)


@pytest.mark.parametrize("name", ["adapter_model.safetensors", "gate/reports/eval.json", "tokenizer.json"])
def test_plain_bundle_paths_are_accepted(name: str) -> None:
    assert check_relpath(name) == name


def test_symlink_in_a_bundle_is_refused_before_signing(
    tmp_path: Path, release_keys: dict[str, KeyPair]
) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "secret").write_text("outside")
    (tmp_path / "b" / "adapter_config.json").write_text("{}")
    os.symlink(tmp_path / "secret", tmp_path / "b" / "leak.json")
    with pytest.raises(InputError, match=r"symlink: leak\.json"):
        list_files(tmp_path / "b")
    with pytest.raises(InputError, match="symlink"):
        sign_bundle(tmp_path / "b", SigningConfig(method="key", private_key=release_keys["release"].private))
    assert not (tmp_path / "b" / "gate").exists()


def test_oversized_json_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 600 + "0]")
    with pytest.raises(InputError, match="over the 1000 byte limit"):
        read_json(big, max_bytes=1000)


@pytest.mark.parametrize(
    ("text", "kind", "location", "repo", "tag", "digest"),
    [
        ("oci://127.0.0.1:5000/team/adapter:v1", "registry", "127.0.0.1:5000", "team/adapter", "v1", None),
        (
            "oci://ghcr.io/org/a@sha256:" + "a" * 64,
            "registry",
            "ghcr.io",
            "org/a",
            None,
            "sha256:" + "a" * 64,
        ),
        ("oci-layout://./out/registry:smollm2", "layout", "./out/registry", "", "smollm2", None),
        ("oci-layout:///abs/reg", "layout", "/abs/reg", "", None, None),
    ],
)
def test_oci_references_parse(
    text: str, kind: str, location: str, repo: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_ref(text)
    assert (ref.kind, ref.location, ref.repository, ref.tag, ref.digest) == (
        kind,
        location,
        repo,
        tag,
        digest,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("docker://x/y:z", "not an OCI reference"),
        ("oci://host", "names no repository"),
        ("oci://host/Repo:v1", "bad repository name"),
        ("oci://host/repo@sha256:xyz", "bad digest"),
        ("oci://host/repo:bad/tag!", "bad"),
    ],
)
def test_bad_oci_references_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_ref(text)
