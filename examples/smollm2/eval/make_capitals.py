"""Build data/capitals_terse.jsonl from the held-out split of the training task (deterministic).

The countries in ../data/heldout.jsonl never appear in ../data/train.jsonl, so the
eval measures the learned answer format on unseen questions::

    python examples/smollm2/eval/make_capitals.py
"""

from __future__ import annotations

import json
from pathlib import Path


def main() -> None:
    """Write one eval document per held-out conversation: question, expected city, country id."""
    here = Path(__file__).parent
    rows = []
    heldout = (here.parent / "data" / "heldout.jsonl").read_text(encoding="utf-8")
    for i, line in enumerate(heldout.splitlines()):
        messages = json.loads(line)["messages"]
        user = next(m["content"] for m in messages if m["role"] == "user")
        answer = next(m["content"] for m in messages if m["role"] == "assistant")
        rows.append({"id": f"cap-{i:02d}", "question": user, "answer": answer})
    out = here / "data" / "capitals_terse.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{out.name}: {len(rows)} documents")


if __name__ == "__main__":
    main()
