"""gate: the release and serving-handoff gatekeeper for fine-tuned LLM adapters.

Nothing reaches production that was not proven to load, behave and score in the
real serving runtime. The core package is light (no torch, transformers or vLLM
import); every heavy stack runs in an isolated environment gate builds itself.

Example::

    $ gate base smollm2 --out base/
    $ gate check runs/r1/adapter --contract contracts/smollm2-vllm.yaml --base base/
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
