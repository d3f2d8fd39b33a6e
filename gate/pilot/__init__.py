"""Pilot comparisons: one spec through every toolkit, every gate on each adapter, a decision matrix.

``gate pilot SPEC --toolkits llamafactory,axolotl,unsloth --repeats 2`` trains,
gates and compares; see ``docs/pilot.md``. Example::

    from gate.pilot import PilotRequest, run_pilot

    spec = Path("examples/smollm2/train.yaml")
    result = run_pilot(PilotRequest(spec, ("unsloth",), Path("pilot"), contract_path="smollm2"))
    result.matrix.complete, result.files["html"]
"""

from __future__ import annotations

from gate.pilot._build import build_matrix
from gate.pilot._matrix import Cell, Criterion, PilotMatrix, Source, same_value, trace
from gate.pilot._outputs import PilotResult, load_matrix, rescore, write_outputs
from gate.pilot._render import render_fragment, render_html, render_markdown, score_chart_svg
from gate.pilot._runner import DEFAULT_TOOLKITS, PilotRequest, run_pilot
from gate.pilot._weights import DEFAULT_WEIGHTS, Weights

__all__ = [
    "DEFAULT_TOOLKITS",
    "DEFAULT_WEIGHTS",
    "Cell",
    "Criterion",
    "PilotMatrix",
    "PilotRequest",
    "PilotResult",
    "Source",
    "Weights",
    "build_matrix",
    "load_matrix",
    "render_fragment",
    "render_html",
    "render_markdown",
    "rescore",
    "run_pilot",
    "same_value",
    "score_chart_svg",
    "trace",
    "write_outputs",
]
