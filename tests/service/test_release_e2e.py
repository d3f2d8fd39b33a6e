"""A release of the embedded default through the real server: queue, worker, THE pipeline, registry, UI.

The real ``gate serve`` (SQLite, one local worker) gates the trained SmolLM2
adapter run (``trained_adapter_run``) on the shared vLLM server, signs it with a
key and publishes it to the real test registry; the test follows the live SSE
stream, reads everything back over HTTP, and then a real browser (Debian
chromium driven by Playwright) renders the release list and page with charts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gate.signing import generate_key
from tests.fixtures.service import ServiceFactory, ServiceProcess

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "service"


@dataclass(frozen=True)
class Published:
    svc: ServiceProcess
    release: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    registry: Any
    run: Path


def follow_events(
    svc: ServiceProcess, release_id: int, *, timeout: float = 1500.0
) -> list[tuple[str, dict[str, Any]]]:
    """Read the live SSE stream of a release until the server ends it."""
    events: list[tuple[str, dict[str, Any]]] = []
    with (
        svc.client("read", timeout=httpx.Timeout(timeout, connect=30)) as c,
        c.stream("GET", f"/api/releases/{release_id}/events") as s,
    ):
        kind = ""
        for line in s.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[len("data: ") :])))
                if kind == "end":
                    break
    return events


def release_server(
    services: ServiceFactory,
    *,
    runs_root: Path,
    registry: Any,
    vllm_url: str,
    keys: Path,
    **overrides: Any,
) -> ServiceProcess:
    """A server that gates, signs (key method) and publishes to ``registry``."""
    from gate.base_model import cached_smollm2
    from gate.service.settings import PublishSettings

    key = keys / "release.key"
    if not key.exists():
        generate_key(key, keys / "release.pub")
    return services(
        workers=overrides.pop("workers", 1),
        allowed_roots=(runs_root,),
        vllm_url=vllm_url,
        base_dir=cached_smollm2(),
        publish=PublishSettings(
            target_prefix=f"oci://{registry.host}/adapters", sign_method="key", sign_key=key
        ),
        env={**registry.env(), **overrides.pop("env", {})},
        **overrides,
    )


@pytest.fixture(scope="module")
def published(
    module_services: ServiceFactory,
    trained_adapter_run: Path,
    vllm_server: Any,
    docker_registry: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Published:
    svc = release_server(
        module_services,
        runs_root=trained_adapter_run.resolve().parent,
        registry=docker_registry,
        vllm_url=vllm_server.url,
        keys=tmp_path_factory.mktemp("keys"),
    ).start()
    with svc.client("submit") as c:
        r = c.post(
            "/api/releases",
            json={
                "name": "capitals",
                "version": "1.0.0",
                "run": str(trained_adapter_run),
                "contract": "smollm2-vllm",
            },
        )
        assert r.status_code == 201, r.text
    events = follow_events(svc, r.json()["id"])
    with svc.client("read") as c:
        release = c.get(f"/api/releases/{r.json()['id']}").json()
    return Published(svc, release, events, docker_registry, trained_adapter_run)


def test_a_submitted_release_runs_every_gate_and_is_published_once(published: Published) -> None:
    r = published.release
    assert r["status"] == "published", (r["error"], published.svc.log.read_text()[-3000:])
    assert {g["gate"]: g["status"] for g in r["gates"]} == {
        "check": "passed",
        "smoke": "passed",
        "eval": "passed",
        "sign": "passed",
        "publish": "passed",
    }
    # The live stream carried the pipeline's own events, in order, and ended with the outcome.
    kinds = [k for k, _ in published.events]
    assert kinds[0] == "submitted" and kinds[-1] == "end"
    started = [d["gate"] for k, d in published.events if k == "gate.start"]
    assert started == ["check", "smoke", "eval", "sign", "publish"]
    assert published.events[-1][1]["status"] == "published"
    # What the registry holds under the tag is exactly the digest the service recorded.
    digest, _ = published.registry.manifest("adapters/capitals", "1.0.0")
    assert digest == r["digest"] and r["target"].endswith("/adapters/capitals:1.0.0")
    assert r["verdict"]["released"] is True and r["verdict"]["published"]["digest"] == digest
    with published.svc.client("read") as c:
        audit = c.get("/api/audit", params={"release_id": r["id"]}).json()
        assert [a["action"] for a in audit] == ["submitted", "published"]
        assert audit[1]["digest"] == digest and audit[0]["actor"] == r["submitted_by"]
        for gate in ("check", "smoke", "eval"):
            report = c.get(f"/api/releases/{r['id']}/reports/{gate}").json()
            assert report["passed"] is True, gate
        metrics = c.get("/api/releases/{}/reports/eval".format(r["id"])).json()["metrics"]
        assert all(m["adapter"] is not None and m["reference_score"] is not None for m in metrics)
        # A second submission of the same version is refused; nothing is published again.
        with published.svc.client("submit") as sub:
            again = sub.post(
                "/api/releases",
                json={
                    "name": "capitals",
                    "version": "1.0.0",
                    "run": str(published.run),
                    "contract": "smollm2-vllm",
                },
            )
            assert again.status_code == 409
        assert [a["action"] for a in c.get("/api/audit", params={"release_id": r["id"]}).json()].count(
            "published"
        ) == 1


def test_the_web_ui_renders_the_release_with_its_charts_in_a_real_browser(published: Published) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    r = published.release
    rid = r["id"]
    has_eval = False
    if any(g["gate"] == "eval" and g["has_report"] for g in r["gates"]):
        with published.svc.client("read") as c:
            metrics = c.get(f"/api/releases/{rid}/reports/eval").json().get("metrics") or []
        # The chart needs both scores of at least one metric (an evaluator that crashed has none).
        has_eval = any(m.get("adapter") is not None and m.get("reference_score") is not None for m in metrics)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1600})
            host = published.svc.settings.host
            context.add_cookies(
                [{"name": "gate_token", "value": published.svc.token("read"), "domain": host, "path": "/"}]
            )
            page = context.new_page()
            page.goto(published.svc.url + "/")
            row = page.locator(f"tr[data-release='{rid}']")
            assert row.locator(f".badge.status.{r['status']}").count() == 1
            assert row.locator(".badge.gate").count() == len(r["gates"])
            page.screenshot(path=str(ARTIFACTS / "release-list.png"), full_page=True)
            row.locator("a").first.click()
            page.wait_for_url(f"**/releases/{rid}")
            # The training loss curve of the run record, drawn as SVG with one point per logged step.
            loss = page.locator("svg[data-chart='loss']")
            box = loss.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 100
            points = (loss.locator("polyline.series").get_attribute("points") or "").split()
            assert len(points) >= 2 and len(points) == loss.locator("circle").count()
            if has_eval:
                # Base vs adapter per metric, two bars each, with visible height.
                bars = page.locator("svg[data-chart='eval'] rect.bar")
                assert (
                    bars.count() >= 2 and page.locator("svg[data-chart='eval'] rect.bar.adapter").count() >= 1
                )
                bar_box = page.locator("svg[data-chart='eval'] rect.bar.adapter").first.bounding_box()
                assert bar_box is not None and bar_box["width"] > 0
            else:
                assert "No evaluation report yet." in page.locator("#eval-chart").inner_text()
            assert page.locator("#audit tbody tr").count() >= 2
            assert page.locator("#gates tbody tr").count() == len(r["gates"])
            page.screenshot(path=str(ARTIFACTS / "release-page.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "release-page.png").stat().st_size > 10_000
