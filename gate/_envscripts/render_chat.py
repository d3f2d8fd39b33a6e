"""Render chat fixtures with a base's own tokenizer (runs inside gate's "reference" environment).

usage: python render_chat.py REQUEST.json RESULT.json

REQUEST: {"base_dir": str, "chat_template": str | null,
          "fixtures": [{"name": str, "messages": [...], "add_generation_prompt": bool}]}
RESULT:  {"fixtures": [{"name", "text"} | {"name", "error"}], "transformers": str}

A fixture the template refuses (e.g. a system turn for Gemma) gets its error instead of a text.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    request_path, result_path = sys.argv[1], sys.argv[2]
    with open(request_path, encoding="utf-8") as fh:
        request = json.load(fh)

    import transformers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(request["base_dir"])
    out = []
    for fixture in request["fixtures"]:
        try:
            text = tokenizer.apply_chat_template(
                fixture["messages"],
                chat_template=request.get("chat_template"),
                tokenize=False,
                add_generation_prompt=fixture["add_generation_prompt"],
            )
            out.append({"name": fixture["name"], "text": text})
        except Exception as e:  # the template's own refusal, reported per fixture
            out.append({"name": fixture["name"], "error": f"{type(e).__name__}: {e}"})
    with open(result_path, "w", encoding="utf-8") as fh:
        json.dump({"fixtures": out, "transformers": transformers.__version__}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
