"""The web UI in a real browser (Debian chromium, Playwright): log in, read evidence, approve, retry, filter.

The server is the real ``gate serve`` (no queue workers: an approved or retried
release stays queued, which is what the UI must show). Its database holds
releases written as the worker records them, with the verdict and reports of a
real release (tests/fixtures/service_seed.py), so no gate runs here. Each
page is saved as a screenshot: in a temporary directory, or under
``$GATE_UI_SHOTS`` (``make screenshots`` points it at docs/ui/), so a test run
leaves the committed screenshots as they are.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.service import ServiceFactory, ServiceProcess, create_token, write_run_dir
from tests.fixtures.service_seed import SeedRelease, seed_releases, seed_reports

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
LONG_ERROR = (
    "vLLM server at http://127.0.0.1:8000 stopped answering during the smoke gate: "
    "ConnectError [Errno 111] Connection refused " + "/very/long/path/without/spaces" * 12
)


@dataclass(frozen=True)
class UI:
    svc: ServiceProcess
    tokens: dict[str, str]
    ids: dict[str, int]


@pytest.fixture(scope="module")
def ui(module_services: ServiceFactory, tmp_path_factory: pytest.TempPathFactory) -> UI:
    root = tmp_path_factory.mktemp("ui")
    run = write_run_dir(root / "runs")
    svc = module_services(database_url=f"sqlite:///{root / 'gate.db'}", allowed_roots=(root / "runs",))
    tokens = {
        "ci": create_token(svc.settings, "ci", "submit"),
        "alice": create_token(svc.settings, "alice", "approve"),
        "bob": create_token(svc.settings, "bob", "approve"),
    }
    day = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    specs = {
        "published": SeedRelease("capitals", "1.0.0", created_at=day, channels=("prod", "staging")),
        "other": SeedRelease("summaries", "0.3.0", contract="smollm2-vllm", created_at=day),
        "awaiting": SeedRelease(
            "capitals", "1.1.0", status="awaiting_approval", approval_required=True, submitted_by="token:ci"
        ),
        "own": SeedRelease(
            "capitals",
            "1.2.0",
            status="awaiting_approval",
            approval_required=True,
            submitted_by="token:alice",
        ),
        "errored": SeedRelease(
            "capitals",
            "1.3.0",
            status="error",
            error=LONG_ERROR,
            gates=("check", "smoke"),
            last_gate_status="error",
        ),
        "failed": SeedRelease(
            "capitals",
            "1.4.0",
            status="failed",
            error="gate eval failed: capitals/acc regressed",
            gates=("check", "smoke", "eval"),
            last_gate_status="failed",
        ),
    }
    ids = dict(zip(specs, seed_releases(svc.settings, list(specs.values()), run_dir=run), strict=True))
    return UI(svc.start(), tokens, ids)


@pytest.fixture
def page(ui: UI) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            yield browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        finally:
            browser.close()


def _login(page: Any, ui: UI, who: str, then: str = "/") -> None:
    page.goto(ui.svc.url + then)
    page.wait_for_url("**/login?next=*")
    page.fill("input[name=token]", ui.tokens[who])
    page.click("#login button[type=submit]")
    page.wait_for_url(ui.svc.url + then)


def _fits(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url} is {width}px wide"


@functools.cache
def _shots_dir() -> Path:
    chosen = os.environ.get("GATE_UI_SHOTS")
    shots = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="gate-ui-shots-"))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def _shot(page: Any, name: str) -> None:
    _fits(page)
    path = _shots_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0, f"empty screenshot {path}"


def test_login_sets_an_httponly_samesite_cookie_and_logout_clears_it(ui: UI, page: Any) -> None:
    page.goto(ui.svc.url + "/")
    page.wait_for_url("**/login?next=*")
    page.fill("input[name=token]", "gate_not-a-token")
    page.click("#login button[type=submit]")
    assert "unknown API token" in page.locator("#login-error").inner_text()
    _shot(page, "login")
    _login(page, ui, "alice")
    cookie = next(c for c in page.context.cookies() if c["name"] == "gate_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""
    page.click("#logout")
    page.wait_for_url("**/login")
    assert not [c for c in page.context.cookies() if c["name"] == "gate_token"]


def test_the_list_filters_by_status_and_the_release_page_shows_evidence_tables(ui: UI, page: Any) -> None:
    _login(page, ui, "alice")
    assert page.locator("#releases tbody tr").count() == len(ui.ids)
    _shot(page, "releases")
    page.select_option("select[name=status]", "error")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/?status=error*")
    rows = page.locator("#releases tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-status") == "error"
    _shot(page, "releases-filtered")
    page.goto(f"{ui.svc.url}/releases/{ui.ids['published']}")
    real = seed_reports()["reports"]
    gates = [t.inner_text() for t in page.locator("#gates tbody tr td:first-child").all()]
    assert gates == ["check", "smoke", "eval"]
    assert all(" s" in t.inner_text() for t in page.locator("#gates tbody tr td:nth-child(3)").all())
    findings = real["check"].get("findings") or []
    assert page.locator("#check-findings tbody tr").count() == max(1, len(findings))
    headers = [h.inner_text() for h in page.locator("#eval-metrics thead th").all()]
    assert headers == ["metric", "n", "base", "adapter", "delta", "lower bound", "threshold", "verdict"]
    metrics = real["eval"]["metrics"]
    assert page.locator("#eval-metrics tbody tr").count() == len(metrics)
    first = page.locator("#eval-metrics tbody tr").first.locator("td")
    assert first.nth(0).inner_text() == metrics[0]["key"]
    assert first.nth(2).inner_text() == f"{metrics[0]['reference_score']:.4f}"
    assert first.nth(3).inner_text() == f"{metrics[0]['adapter']:.4f}"
    answers = [a for p in real["smoke"]["probes"] for a in (p.get("details") or {}).get("answers", [])]
    assert answers, "the smoke report has prompt answers"
    answer_rows = page.locator("#smoke-answers tbody tr")
    assert answer_rows.count() == len(answers)
    assert answers[0]["text"].strip()[:20] in answer_rows.first.locator("td").nth(3).inner_text()
    _shot(page, "release")
    for path, name, selector in (
        ("/adapters/capitals", "versions", "#versions tr[data-version='1.0.0'] .channels .badge"),
        ("/audit", "audit", "#audit-log tbody tr"),
        ("/runs", "runs", "#runs tbody tr"),
        ("/contracts", "contracts", "#contracts tbody tr"),
    ):
        page.goto(ui.svc.url + path)
        assert page.locator(selector).count() >= 1
        _shot(page, name)


def test_an_approver_approves_but_never_its_own_release(ui: UI, page: Any) -> None:
    _login(page, ui, "alice", then=f"/releases/{ui.ids['own']}")
    assert page.locator("#approve").count() == 0
    assert "another approver" in page.locator("#approval-note").inner_text()
    # Not by the API either: the rule lives in the action, not in the button.
    with ui.svc.client(None) as c:
        headers = {"Authorization": f"Bearer {ui.tokens['alice']}"}
        assert c.post(f"/api/releases/{ui.ids['own']}/approve", headers=headers).status_code == 403
    page.goto(f"{ui.svc.url}/releases/{ui.ids['awaiting']}")
    _shot(page, "awaiting-approval")
    page.click("#approve")
    page.wait_for_url(f"**/releases/{ui.ids['awaiting']}")
    assert page.locator("#status").inner_text() == "queued"
    assert "approved by token:alice" in page.locator("#summary").inner_text()
    assert "approved" in [t.inner_text() for t in page.locator("#audit tbody tr td:nth-child(3)").all()]
    _shot(page, "approved")


def test_an_errored_release_is_shown_as_an_outage_and_retried_under_the_same_version(
    ui: UI, page: Any
) -> None:
    _login(page, ui, "ci", then=f"/releases/{ui.ids['failed']}")
    assert page.locator("#status").inner_text() == "failed" and page.locator("#retry").count() == 0
    page.goto(f"{ui.svc.url}/releases/{ui.ids['errored']}")
    assert "an outage, not a failed gate" in page.locator("#error").inner_text()
    assert page.locator("#gates tr[data-gate=smoke] .badge.error").count() == 1
    _shot(page, "errored")
    page.click("#retry")
    page.wait_for_url(f"**/releases/{ui.ids['errored']}")
    assert page.locator("#status").inner_text() == "queued"
    assert "1.3.0" in page.locator("h2").inner_text()
    assert "retried" in [t.inner_text() for t in page.locator("#audit tbody tr td:nth-child(3)").all()]
    with ui.svc.client("read") as c:
        jobs = c.get(f"/api/releases/{ui.ids['errored']}").json()
        assert jobs["status"] == "queued" and jobs["version"] == "1.3.0" and jobs["error"] is None
