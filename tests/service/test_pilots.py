"""Pilot matrices in the service: upload (validated, bounded, authenticated), list, read, and the UI page.

The matrix is built from REAL run records (``trained_adapter_run`` laid out as a
pilot directory) and sent to the real server (uvicorn subprocess, real socket).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate.pilot import PilotMatrix, Weights, build_matrix, score_chart_svg
from gate.service.domain.pilots import MAX_PILOT_BYTES
from tests.fixtures.pilot import pilot_dir_of
from tests.fixtures.service import ServiceFactory, ServiceProcess


@pytest.fixture(scope="module")
def pilot_service(module_services: ServiceFactory) -> ServiceProcess:
    return module_services().start()


@pytest.fixture
def pilot_json(trained_adapter_run: Path, tmp_path: Path) -> bytes:
    root = pilot_dir_of(trained_adapter_run, tmp_path / "pilot")
    matrix = build_matrix(
        root,
        toolkits=["unsloth"],
        repeats=2,
        eval_metrics=["capitals_terse/exact_match,strip"],
        weights=Weights(),
        weights_file=None,
        spec={"name": "train.yaml", "sha256": "0" * 64},
        contract={"name": "smollm2-vllm", "sha256": "1" * 64},
        settings={"repeats": 2},
        phases={},
    )
    return json.dumps(matrix.to_dict()).encode()


def test_an_uploaded_pilot_is_listed_read_back_and_rendered_with_the_cli_chart(
    pilot_service: ServiceProcess, pilot_json: bytes
) -> None:
    with pilot_service.client("submit") as c:
        r = c.post("/api/pilots", content=pilot_json, headers={"content-type": "application/json"})
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["toolkits"] == ["unsloth"] and made["complete"] is False
        # The same matrix again is the same pilot (content-addressed), not a duplicate.
        assert c.post("/api/pilots", content=pilot_json).json()["id"] == made["id"]
    matrix = PilotMatrix.from_dict(json.loads(pilot_json))
    with pilot_service.client("read") as c:
        listed = c.get("/api/pilots").json()
        assert [p["id"] for p in listed].count(made["id"]) == 1
        got = c.get(f"/api/pilots/{made['id']}")
        assert got.status_code == 200 and PilotMatrix.from_dict(got.json()) == matrix
        page = c.get(f"/pilots/{made['id']}")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert score_chart_svg(matrix) in page.text
        index = c.get("/pilots")
        assert f'href="/pilots/{made["id"]}"' in index.text
        assert c.get("/api/pilots/0123456789abcdef").status_code == 404
        assert c.get("/pilots/..%2F..%2Fetc").status_code == 404


def test_uploading_needs_the_submit_role(pilot_service: ServiceProcess, pilot_json: bytes) -> None:
    with pilot_service.client("read") as c:
        assert c.post("/api/pilots", content=pilot_json).status_code == 403
    with pilot_service.client(None) as c:
        assert c.post("/api/pilots", content=pilot_json).status_code == 401
        assert c.get("/api/pilots").status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "the request body is empty"),
        (b"{not json", 400, "not valid JSON"),
        (b'{"version": "1.0"}', 400, "not a gate pilot matrix"),
        (b" " * (MAX_PILOT_BYTES + 1), 413, "over the limit"),
    ],
)
def test_bad_or_oversized_matrices_are_refused_with_a_clear_error(
    pilot_service: ServiceProcess, body: bytes, status: int, message: str
) -> None:
    with pilot_service.client("submit") as c:
        r = c.post("/api/pilots", content=body)
    assert r.status_code == status, r.text
    assert message in r.text


def test_markup_inside_an_uploaded_matrix_is_shown_as_text_not_run(
    pilot_service: ServiceProcess, pilot_json: bytes
) -> None:
    data = json.loads(pilot_json)
    hostile = '<script>alert("x")</script>'
    data["toolkits"][0]["toolkit"] = hostile
    data["scores"][0]["toolkit"] = hostile
    data["criteria"][0]["label"] = '<img src=x onerror="alert(1)">'
    with pilot_service.client("submit") as c:
        made = c.post("/api/pilots", content=json.dumps(data).encode())
    assert made.status_code == 201, made.text
    with pilot_service.client("read") as c:
        page = c.get(f"/pilots/{made.json()['id']}").text
        index = c.get("/pilots").text
    for html in (page, index):
        assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert" in page
