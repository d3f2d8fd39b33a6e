"""A local GitHub Actions runner for gate's workflow tests (see each module's docstring).

Expressions are GitHub's own (``@actions/expressions`` via Node), every job starts on a fresh
runner image, local composite actions and reusable workflows run through their own steps, and
remote actions run through explicit local mappings.
"""

from tests.workflows.runner.expressions import ExpressionError, Expressions
from tests.workflows.runner.image import RunnerImage
from tests.workflows.runner.results import (
    JobResult,
    RunResult,
    StepResult,
    action_defaults,
    load_yaml,
    workflow_call_defaults,
)
from tests.workflows.runner.workflow import WorkflowError, WorkflowRunner

__all__ = [
    "ExpressionError",
    "Expressions",
    "JobResult",
    "RunResult",
    "RunnerImage",
    "StepResult",
    "WorkflowError",
    "WorkflowRunner",
    "action_defaults",
    "load_yaml",
    "workflow_call_defaults",
]
