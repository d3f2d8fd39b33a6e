"""Does vLLM 0.26 die when steps over 1024 tokens carry prompt log-probs beside many LoRA requests?

vllm-project/vllm#53842: the model runner computes prompt log-probs in 1024-token chunks while the LoRA logits
kernels keep the step's per-request row mapping, so in a last chunk with fewer rows than the step has LoRA
requests they index rows past the chunk. gate starts vLLM on CUDA with --max-num-batched-tokens 1024
(gate/serving/_server.py); this script starts a server like gate's (same LoRA flags, the msgpack workaround of
vllm#50053 on) with or without that flag and loads it the way the concurrent H200 stream did: lm-eval's
multiple-choice shape (completions of 16 prompts each, echo + logprobs, 8 in flight, one LoRA) while 160
requests of two other LoRAs decode. Run on the device host after an H200 session (vLLM from /tmp/site):

    python3 repro_vllm_53842.py BASE_DIR ADAPTER_DIR OUT_DIR SECONDS [--max-num-batched-tokens 1024]

Writes OUT_DIR/repro-vllm.log (the server's log) and prints one JSON line: alive, errors, what the log shows.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "near",
    "a",
    "river",
    "bank",
    "at",
    "dawn",
    "while",
    "birds",
    "sing",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    base, adapter, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    seconds, extra = float(sys.argv[4]), sys.argv[5:]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", base]
    argv += ["--served-model-name", "base", "--host", "127.0.0.1", "--port", str(port), "--enable-lora"]
    argv += ["--max-lora-rank", "16", "--max-loras", "4", "--max-model-len", "2048", "--seed", "0", *extra]
    env = dict(
        os.environ, VLLM_ALLOW_RUNTIME_LORA_UPDATING="True", VLLM_MSGPACK_ZERO_COPY_THRESHOLD=str(1 << 40)
    )
    log_path = out / f"repro-vllm{'-flag' if extra else ''}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    result: dict[str, object] = {"extra_args": extra, "seconds": seconds}

    def post(path: str, body: dict[str, object]) -> bytes:
        req = urllib.request.Request(
            url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            return bytes(r.read())

    def alive() -> bool:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def multiple_choice(i: int) -> bytes:
        prompts = [
            " ".join(WORDS[(i + j + k) % len(WORDS)] for k in range(10 + (i + j) % 6)) for j in range(16)
        ]
        body = {
            "model": "la",
            "prompt": prompts,
            "max_tokens": 1,
            "echo": True,
            "logprobs": 1,
            "temperature": 0,
        }
        return post("/v1/completions", body)

    def generate(i: int) -> bytes:
        body = {"model": ("lb", "lc")[i % 2], "prompt": "Tell me a story about", "max_tokens": 48}
        return post("/v1/completions", {**body, "ignore_eos": True, "temperature": 0})

    t0 = time.time()
    try:
        while not alive():
            if proc.poll() is not None or time.time() - t0 > 330:
                result["boot"] = "failed"
                print(json.dumps(result))
                return 1
            time.sleep(1)
        result["boot_s"] = round(time.time() - t0, 1)
        for name in ("la", "lb", "lc"):
            post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": adapter})
        rounds = errors = 0
        first_error = None
        t1 = time.time()
        with cf.ThreadPoolExecutor(256) as pool:
            while time.time() - t1 < seconds and proc.poll() is None and not errors:
                futures = [pool.submit(generate, i) for i in range(160)]
                time.sleep(0.1)
                futures += [pool.submit(multiple_choice, rounds * 8 + i) for i in range(8)]
                for f in futures:
                    try:
                        f.result()
                    except OSError as e:
                        errors += 1
                        first_error = first_error or repr(e)[:300]
                rounds += 1
        result.update(rounds=rounds, errors=errors, first_error=first_error, run_s=round(time.time() - t1, 1))
        result["alive"] = alive()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    text = log_path.read_text(errors="replace")
    result["illegal_memory_access"] = "illegal memory access" in text
    result["engine_fatal_error"] = "EngineCore encountered a fatal error" in text
    result["max_num_batched_tokens"] = text.split("max_num_batched_tokens=", 1)[-1].split(",")[0][:8]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
