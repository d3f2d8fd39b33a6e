"""Chat fixtures rendered by the base's own tokenizer, in the isolated reference environment."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from gate.errors import ToolError

__all__ = ["DEFAULT_FIXTURES", "render_fixtures"]

_SCRIPT = Path(__file__).resolve().parent.parent / "_envscripts" / "render_chat.py"

#: The conversations every generated contract pins: one turn, a system turn, several turns, a closed one.
DEFAULT_FIXTURES: tuple[dict[str, Any], ...] = (
    {
        "name": "single_user",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "add_generation_prompt": True,
    },
    {
        "name": "system_prompt",
        "messages": [
            {"role": "system", "content": "Answer with the city name only."},
            {"role": "user", "content": "What is the capital of Japan?"},
        ],
        "add_generation_prompt": True,
    },
    {
        "name": "multi_turn",
        "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris"},
            {"role": "user", "content": "And of Italy?"},
        ],
        "add_generation_prompt": True,
    },
    {
        "name": "closed_conversation",
        "messages": [
            {"role": "user", "content": "Capital of Spain?"},
            {"role": "assistant", "content": "Madrid"},
        ],
        "add_generation_prompt": False,
    },
)


def render_fixtures(
    base_dir: Path, fixtures: list[dict[str, Any]], *, chat_template: str | None = None
) -> list[dict[str, Any]]:
    """Each fixture with ``text`` (what the tokenizer renders) or ``error`` (what the template raised)."""
    from gate.envs import ensure, reference_env_spec
    from gate.proc import run_streamed

    env = ensure(reference_env_spec())
    with tempfile.TemporaryDirectory(prefix="gate-render-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request.write_text(
            json.dumps(
                {"base_dir": str(base_dir.resolve()), "chat_template": chat_template, "fixtures": fixtures}
            )
        )
        done = run_streamed(
            [str(env.python), str(_SCRIPT), str(request), str(result)],
            env=env.environ(),
            timeout=600,
        )
        if done.returncode != 0 or not result.is_file():
            raise ToolError(
                f"rendering the chat fixtures with the base's tokenizer failed (exit {done.returncode})",
                hint=done.tail[-1500:],
            )
        data = json.loads(result.read_text()[: 16 << 20])
    rendered = data.get("fixtures") if isinstance(data, dict) else None
    if not isinstance(rendered, list) or len(rendered) != len(fixtures):
        raise ToolError("the fixture renderer wrote an unusable result")
    return [{**f, **r} for f, r in zip(fixtures, rendered, strict=True)]
