"""gate.github: workflow-command escaping, summary tables, annotations, and silence outside Actions."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gate import github

ACTIONS = {"GITHUB_ACTIONS": "true"}

FAILED_VERDICT = {
    "version": "1.0",
    "released": False,
    "ref": "localhost:5000/adapters/capitals:v1",
    "gates": [
        {"name": "check", "passed": True, "summary": "12 rules passed"},
        {
            "name": "smoke",
            "passed": False,
            "summary": "adapter output equals base output",
            "findings": [
                {
                    "rule": "logprob-shift",
                    "severity": "error",
                    "message": "max |Δlogprob| 0.000 < 0.01: the adapter changes nothing",
                    "file": "/ws/run/adapter/adapter_model.safetensors",
                },
                {"rule": "ttft", "severity": "warning", "message": "TTFT 2.1 s"},
            ],
        },
        {"name": "eval", "status": "skipped", "reason": "an earlier gate failed"},
    ],
}


def test_escape_data_encodes_percent_first_then_newlines() -> None:
    assert github.escape_data("50%\r\nnext") == "50%25%0D%0Anext"
    # Already-encoded text must not decode back: %0A typed by a user stays literal.
    assert github.escape_data("%0A") == "%250A"


def test_escape_property_also_encodes_colon_and_comma() -> None:
    assert github.escape_property("a: b, c%\n") == "a%3A b%2C c%25%0A"


def test_annotation_command_escapes_properties_and_message() -> None:
    note = github.Annotation(
        message="line one\nrank 64 > 16: 100%", title="gate check: rank", file="run/a,b.json", line=3
    )
    assert note.to_command() == (
        "::error title=gate check%3A rank,file=run/a%2Cb.json,line=3::line one%0Arank 64 > 16: 100%25"
    )


def test_annotation_without_properties_has_bare_command() -> None:
    assert github.Annotation(message="boom", level="warning").to_command() == "::warning::boom"


def test_nothing_is_written_outside_actions(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    stream = io.StringIO()
    env = {"GITHUB_STEP_SUMMARY": str(summary)}  # set, but GITHUB_ACTIONS is not "true"
    assert github.in_actions(env) is False
    assert github.annotate_error("x", stream=stream, environ=env) is False
    assert github.write_summary("# hi", environ=env) is False
    outcome = github.report(FAILED_VERDICT, stream=stream, environ=env)
    assert (outcome.summary_written, outcome.annotations) == (False, 0)
    assert stream.getvalue() == ""
    assert not summary.exists()


def test_github_actions_must_be_exactly_true() -> None:
    assert github.in_actions({"GITHUB_ACTIONS": "true"})
    assert not github.in_actions({"GITHUB_ACTIONS": "1"})
    assert not github.in_actions({})


def test_annotate_error_makes_workspace_paths_relative() -> None:
    stream = io.StringIO()
    env = {**ACTIONS, "GITHUB_WORKSPACE": "/ws"}
    assert github.annotate_error(
        "bad rank", file="/ws/adapters/cfg.json", line=2, title="t", stream=stream, environ=env
    )
    assert stream.getvalue() == "::error title=t,file=adapters/cfg.json,line=2::bad rank\n"


def test_write_summary_appends_to_the_step_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step output\n")
    env = {**ACTIONS, "GITHUB_STEP_SUMMARY": str(summary)}
    assert github.write_summary("## gate", environ=env)
    assert summary.read_text() == "earlier step output\n## gate\n"


def test_write_summary_is_cut_at_githubs_limit_with_a_note(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    env = {**ACTIONS, "GITHUB_STEP_SUMMARY": str(summary)}
    github.write_summary("x" * (2 * github.SUMMARY_LIMIT_BYTES), environ=env)
    text = summary.read_text()
    assert len(text.encode()) <= github.SUMMARY_LIMIT_BYTES
    assert "summary cut at GitHub's 1 MiB limit" in text


def test_write_summary_without_a_summary_file_is_a_no_op() -> None:
    assert github.write_summary("## gate", environ=ACTIONS) is False


def test_table_cells_cannot_break_the_table_or_inject_html() -> None:
    table = github.markdown_table(("Rule", "Message"), [("a|b", "<script>x</script>\nnext")])
    lines = table.splitlines()
    assert lines[0] == "| Rule | Message |"
    assert lines[1] == "| --- | --- |"
    assert lines[2] == "| a\\|b | &lt;script&gt;x&lt;/script&gt;<br>next |"
    assert len(lines) == 3


def test_long_cells_are_clipped() -> None:
    cell = github.md_cell("y" * 5000)
    assert len(cell) == 300
    assert cell.endswith("…")


def test_render_markdown_tables_gates_and_findings() -> None:
    md = github.render_markdown(FAILED_VERDICT)
    assert md.startswith("## gate release: ❌ not released\n")
    assert "| Item | Value |" in md
    assert "| Reference | localhost:5000/adapters/capitals:v1 |" in md
    assert "| Gate | Status | Detail |" in md
    assert "| check | ✅ passed | 12 rules passed |" in md
    assert "| smoke | ❌ failed | adapter output equals base output |" in md
    assert "| eval | ⏭️ skipped | an earlier gate failed |" in md
    assert "| Gate | Severity | Rule | Message | File |" in md
    assert "| smoke | warning | ttft | TTFT 2.1 s |  |" in md


def test_render_markdown_headline_for_a_release() -> None:
    md = github.render_markdown({"released": True, "gates": {"check": {"passed": True}}})
    assert md.startswith("## gate release: ✅ released\n")
    assert "| check | ✅ passed |  |" in md


def test_a_verdict_without_gates_is_never_reported_as_released() -> None:
    md = github.render_markdown({"gates": []})
    assert "❌ not released" in md
    assert "_No gate ran._" in md
    notes = github.annotations_for({"gates": [], "error": "contract not found"})
    assert [n.message for n in notes] == ["contract not found"]


def test_annotations_name_each_failing_finding_not_warnings() -> None:
    env = {**ACTIONS, "GITHUB_WORKSPACE": "/ws"}
    notes = github.annotations_for(FAILED_VERDICT, environ=env)
    assert [n.to_command() for n in notes] == [
        "::error title=gate smoke%3A logprob-shift,file=run/adapter/adapter_model.safetensors::"
        "max |Δlogprob| 0.000 < 0.01: the adapter changes nothing"
    ]


def test_a_failed_gate_without_findings_gets_one_annotation() -> None:
    notes = github.annotations_for(
        {
            "released": False,
            "gates": [{"name": "eval", "passed": False, "summary": "exact_match 0.10 < 0.50"}],
        }
    )
    assert [(n.title, n.message) for n in notes] == [("gate eval", "exact_match 0.10 < 0.50")]


def test_annotations_are_capped_at_githubs_display_limit() -> None:
    findings = [{"rule": f"r{i}", "message": f"m{i}"} for i in range(25)]
    notes = github.annotations_for(
        {"released": False, "gates": [{"name": "check", "passed": False, "findings": findings}]}
    )
    assert len(notes) == github.MAX_ANNOTATIONS
    assert notes[-1].message == "16 more problems: see the job summary"


def test_report_in_actions_writes_summary_file_and_annotations(tmp_path: Path) -> None:
    step_summary = tmp_path / "step-summary.md"
    local = tmp_path / "out" / "summary.md"
    stream = io.StringIO()
    env = {**ACTIONS, "GITHUB_STEP_SUMMARY": str(step_summary), "GITHUB_WORKSPACE": "/ws"}
    outcome = github.report(FAILED_VERDICT, summary_file=local, stream=stream, environ=env)
    assert outcome == github.ReportOutcome(summary_written=True, annotations=1, summary_file=local)
    assert step_summary.read_text() == local.read_text() == github.render_markdown(FAILED_VERDICT)
    assert stream.getvalue().startswith("::error title=gate smoke%3A logprob-shift,")


def test_report_outside_actions_still_writes_the_local_markdown(tmp_path: Path) -> None:
    local = tmp_path / "summary.md"
    outcome = github.report(FAILED_VERDICT, summary_file=local, environ={})
    assert outcome.summary_written is False
    assert local.read_text() == github.render_markdown(FAILED_VERDICT)


@pytest.mark.parametrize(
    ("gate", "status"),
    [
        ({"status": "PASS"}, "passed"),
        ({"status": "fail"}, "failed"),
        ({"status": "error"}, "error"),
        ({"report": {"passed": False}}, "failed"),
        ({}, "skipped"),
    ],
)
def test_gate_status_is_read_from_status_passed_or_nested_report(
    gate: dict[str, object], status: str
) -> None:
    rows = github.gate_rows({"gates": [{"name": "g", **gate}]})
    assert rows[0].status == status


def test_nested_report_findings_are_found() -> None:
    rows = github.gate_rows(
        {
            "gates": [
                {
                    "name": "check",
                    "report": {
                        "passed": False,
                        "findings": [{"code": "eos", "message": "m", "path": "a.json", "line": 4}],
                    },
                }
            ]
        }
    )
    finding = rows[0].findings[0]
    assert (finding.rule, finding.file, finding.line) == ("eos", "a.json", 4)


def _release_result(
    bundle: Path, *, stopped_at: str | None, gates: list[dict[str, object]]
) -> dict[str, object]:
    """The shape of ``gate release --json`` (gate.pipeline.ReleaseResult.to_dict)."""
    return {
        "version": "1.0",
        "released": stopped_at is None,
        "verdict": {
            "passed": stopped_at is None,
            "stopped_at": stopped_at,
            "reason": f"gate {stopped_at} failed: boom" if stopped_at else None,
            "gates": gates,
            "contract": {"name": "smollm2-vllm", "version": 1, "sha256": "ab" * 32},
            "adapter_digest": "sha256:" + "cd" * 32,
        },
        "bundle": str(bundle),
        "published": {"ref": "oci://h/r@sha256:" + "ef" * 32, "digest": "sha256:" + "ef" * 32}
        if stopped_at is None
        else None,
    }


def test_release_verdict_reads_findings_from_the_bundle_reports(tmp_path: Path) -> None:
    reports = tmp_path / "bundle" / "gate" / "reports"
    reports.mkdir(parents=True)
    (reports / "check.json").write_text(
        '{"passed": false, "findings": [{"rule": "adapter.rank-above-max", "severity": "error", '
        '"message": "r=64 > 16", "path": "adapter_config.json", "hint": "retrain"}, '
        '{"rule": "adapter.note", "severity": "info", "message": "fine", "path": ""}]}'
    )
    result = _release_result(
        tmp_path / "bundle",
        stopped_at="check",
        gates=[
            {"name": "check", "status": "failed", "summary": "r=64 > 16", "report": "gate/reports/check.json"}
        ],
    )
    verdict = github.release_verdict(result, contract="contracts/c.yaml")
    md = github.render_markdown(verdict)
    assert "| check | ❌ failed | r=64 &gt; 16 |" in md
    assert "| smoke | ⏭️ skipped | not run: an earlier gate stopped |" in md
    assert "| sign | ⏭️ skipped | not signed: a gate did not pass |" in md
    assert "| check | error | adapter.rank-above-max | r=64 &gt; 16 | adapter_config.json |" in md
    assert "**Error:**" not in md  # the failed gate's row already says why
    notes = github.annotations_for(verdict, environ={})
    assert [n.to_command() for n in notes] == [
        "::error title=gate check%3A adapter.rank-above-max,file=contracts/c.yaml::r=64 > 16"
    ]


def test_release_verdict_of_a_release_lists_sign_and_publish(tmp_path: Path) -> None:
    gates = [{"name": n, "status": "passed", "summary": "ok"} for n in ("check", "smoke", "eval")]
    verdict = github.release_verdict(_release_result(tmp_path, stopped_at=None, gates=gates))
    md = github.render_markdown(verdict)
    assert md.startswith("## gate release: ✅ released\n")
    assert "| publish | ✅ passed | oci://h/r@sha256:" in md
    assert f"| Digest | sha256:{'ef' * 32} |" in md
    assert github.annotations_for(verdict) == []


def test_release_verdict_shows_a_stop_no_gate_explains(tmp_path: Path) -> None:
    gates = [{"name": n, "status": "passed"} for n in ("check", "smoke", "eval")]
    result = _release_result(tmp_path, stopped_at="approval", gates=gates)
    result["released"] = False
    verdict = github.release_verdict(result)
    assert verdict["error"] == "gate approval failed: boom"
    assert [n.message for n in github.annotations_for(verdict)] == ["gate approval failed: boom"]


def test_release_verdict_never_reads_a_report_outside_the_bundle(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"findings": [{"rule": "leak", "message": "outside"}]}')
    bundle = tmp_path / "bundle"
    (bundle / "gate").mkdir(parents=True)
    (bundle / "gate" / "link.json").symlink_to(secret)
    gates = [
        {"name": "check", "status": "failed", "report": "../secret.json"},
        {"name": "smoke", "status": "failed", "report": "gate/link.json"},
    ]
    verdict = github.release_verdict(_release_result(bundle, stopped_at="check", gates=gates))
    assert all(not g["findings"] for g in verdict["gates"] if "findings" in g)


def test_report_error_writes_a_stopped_section_and_one_annotation(tmp_path: Path) -> None:
    step_summary = tmp_path / "s.md"
    stream = io.StringIO()
    env = {**ACTIONS, "GITHUB_STEP_SUMMARY": str(step_summary)}
    outcome = github.report_error(
        "gate release", "runs/x has no run.json", hint="pass a run directory", stream=stream, environ=env
    )
    assert outcome.annotations == 1 and outcome.summary_written
    assert step_summary.read_text() == (
        "## gate release: ❌ stopped\n\n**Error:** runs/x has no run.json (hint: pass a run directory)\n"
    )
    assert (
        stream.getvalue()
        == "::error title=gate release::runs/x has no run.json (hint: pass a run directory)\n"
    )
