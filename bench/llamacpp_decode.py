"""llama.cpp's single-stream decode tokens/s on the engine's own GGUF, for side-by-side runs.

    .venv/bin/python bench/llamacpp_decode.py [--tokens 64] [--repeats 3] [--threads 2]

llama-cpp-python lives in a venv of its own (BENCH_LLAMACPP_VENV, default /tmp/llamacpp-venv),
never in the project's, built from source with native flags:

    python3.11 -m venv /tmp/llamacpp-venv
    CMAKE_ARGS="-DGGML_NATIVE=ON" /tmp/llamacpp-venv/bin/pip install \\
        --no-binary llama-cpp-python llama-cpp-python==0.3.36

This file is both sides. Run by that venv's python with `--worker` (stdlib and llama_cpp only),
it loads the GGUF once and answers JSON lines on stdin: {"tokens": [...], "n": N} ->
{"n", "tok_s", "tok_s_llama", ...}. `LlamaCppDecoder` (used by bench/efficiency.py, which
interleaves it with the engine per repeat) starts and talks to that worker. Greedy (temp 0),
the prompt token ids given (the engine's chat-encoded prompt), EOS ignored, N new tokens.

BENCH_LLAMACPP_EXTRA_BUFTS=0 loads the weights without llama.cpp's extra buffer types (its
repacked and AMX layouts), so its plain SIMD kernels run: on a Xeon with AMX its AMX path
decodes ~2.5x faster than those (docs/benchmarks.md), and a CPU without AMX runs the plain ones.

Decode tokens/s, prompt evaluation excluded, two ways: `tok_s` is wall-clock from the first
generated token to the N-th, (N - 1) / time, as bench/efficiency.py times the engine;
`tok_s_llama` is llama.cpp's own eval timing (n_eval / t_eval, its perf counters).

Run directly (no --worker) it prints the medians as one JSON line, or null with a reason when
the venv is missing (exit 0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LLAMACPP_VENV = Path(os.environ.get("BENCH_LLAMACPP_VENV", "/tmp/llamacpp-venv"))
N_BATCH = 512  # the worker's prompt batch (1 where batched evaluation crashes it)


def venv_python(venv: Path = LLAMACPP_VENV) -> Path | None:
    """The venv's python when llama_cpp is installed in it, else None."""
    py = venv / "bin" / "python"
    if not py.exists() or not any(venv.glob("lib/python*/site-packages/llama_cpp/__init__.py")):
        return None
    return py


def ratio(num: float | None, den: float | None) -> float | None:
    """num / den rounded to 3 places; None when either is missing or den is not positive."""
    if num is None or den is None or den <= 0:
        return None
    return round(num / den, 3)


def median_or_none(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def side_by_side(
    engine_tok_s: dict[str, float | None], llama_tok_s: float | None, reason: str | None
) -> dict[str, Any]:
    """The last-line fields: llama.cpp's tokens/s and each engine path's ratio to it
    (`<name>_vs_llamacpp`); the ratios are null, with `llamacpp_reason`, when it was not run."""
    out: dict[str, Any] = {"llamacpp_tok_s": llama_tok_s}
    for name, tps in engine_tok_s.items():
        out[f"{name}_vs_llamacpp"] = ratio(tps, llama_tok_s)
    if llama_tok_s is None:
        out["llamacpp_reason"] = reason or "llama.cpp not measured"
    return out


def parse_reply(line: str) -> dict[str, Any]:
    """One worker reply; a worker-side error becomes a RuntimeError."""
    try:
        msg = json.loads(line)
    except ValueError as exc:
        raise RuntimeError(f"llama.cpp worker said: {line.strip()[:300]!r}") from exc
    if not isinstance(msg, dict):
        raise RuntimeError(f"llama.cpp worker said: {line.strip()[:300]!r}")
    if "error" in msg:
        raise RuntimeError(f"llama.cpp worker: {msg['error']}")
    return msg


class LlamaCppDecoder:
    """A llama.cpp worker process with the model loaded; `decode` runs one greedy generation."""

    def __init__(self, model_path: Path, threads: int, python: Path, argv: list[str] | None = None):
        self._cmd = [str(python), *(argv or [str(Path(__file__).resolve()), "--worker"])]
        self._cmd += ["--model", str(model_path), "--threads", str(threads)]
        self.n_batch = N_BATCH
        self.fallback: str | None = None  # why the worker runs with another n_batch
        self._start()
        try:  # a multi-token prompt: batched prompt evaluation
            self.decode(list(range(1, 17)), 2)
        except RuntimeError as exc:
            if self.proc.poll() is None:
                raise
            # seen on a Xeon with AMX: ggml's AMX matmul segfaults on any batch of 2 or more
            # tokens (llama-cpp-python 0.3.36, native or AMX-off builds alike); prompts are then
            # evaluated a token at a time, which the decode timing excludes
            self.fallback = f"n_batch {self.n_batch} crashed the worker ({exc}); n_batch 1"
            self.n_batch = 1
            self._start()
        self.info["n_batch"] = self.n_batch

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [*self._cmd, "--n-batch", str(self.n_batch)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.info = self._read()  # {"ready": true, "version": ..., "n_threads": ...}

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"llama.cpp worker exited (rc {self.proc.wait()})")
        return parse_reply(line)

    def decode(self, tokens: list[int], n: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"tokens": tokens, "n": n}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> LlamaCppDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def worker(model: str, threads: int, n_batch: int) -> None:  # runs in the llama.cpp venv
    import llama_cpp
    import llama_cpp.llama

    extra_bufts = os.environ.get("BENCH_LLAMACPP_EXTRA_BUFTS", "1") != "0"
    if not extra_bufts:  # no repacked / AMX weight buffers: ggml's plain SIMD kernels
        defaults = llama_cpp.llama_model_default_params

        def params():  # noqa: ANN202 - llama_cpp's ctypes struct
            p = defaults()
            p.use_extra_bufts = False
            return p

        llama_cpp.llama.llama_cpp.llama_model_default_params = params  # what Llama() calls
    llm = llama_cpp.Llama(
        model_path=model,
        n_threads=threads,
        n_threads_batch=threads,
        n_ctx=2048,
        n_batch=n_batch,
        verbose=False,
    )
    print(
        json.dumps(
            {
                "ready": True,
                "version": llama_cpp.__version__,
                "n_threads": llm.n_threads,
                "extra_bufts": extra_bufts,
                "system_info": llama_cpp.llama_print_system_info().decode(errors="replace"),
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        try:
            req = json.loads(line)
            tokens, n = list(req["tokens"]), int(req["n"])
            llm.reset()  # no prefix reuse: every run evaluates the whole prompt
            llama_cpp.llama_perf_context_reset(llm.ctx)
            t0 = time.perf_counter()
            first = end = t0
            got: list[int] = []
            for tok in llm.generate(tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
                now = time.perf_counter()
                if not got:
                    first = now
                got.append(int(tok))
                end = now
                if len(got) >= n:
                    break
            perf = llama_cpp.llama_perf_context(llm.ctx)
            reply = {
                "n": len(got),
                "tok_s": (len(got) - 1) / (end - first) if len(got) > 1 and end > first else None,
                "tok_s_llama": perf.n_eval / perf.t_eval_ms * 1e3 if perf.t_eval_ms > 0 else None,
                "n_eval": perf.n_eval,
                "prompt_ms": round(first - t0, 2),
                "head": got[:8],
            }
        except Exception as exc:  # one bad request: say so, keep serving
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true", help="serve decodes (in the llama.cpp venv)")
    ap.add_argument("--model", type=str, default=None, help="GGUF (default: the engine's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-batch", type=int, default=N_BATCH, help="the worker's prompt batch")
    args = ap.parse_args()
    if args.worker:
        assert args.model is not None
        worker(args.model, args.threads, args.n_batch)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from inference.gguf_loader import default_model_path
    from inference.tokenizer_model import TokenizerModel

    model = Path(args.model) if args.model else default_model_path()
    py = venv_python()
    res: dict[str, Any] = {"model": model.name, "threads": args.threads, "tokens": args.tokens}
    if py is None:
        res["llamacpp_tok_s"] = None
        res["llamacpp_reason"] = f"llama-cpp-python not installed in {LLAMACPP_VENV}"
        print(json.dumps(res))
        return
    prompt = TokenizerModel(None).encode_chat(
        [{"role": "user", "content": "Write a poem about the sea."}], add_generation_prompt=True
    )
    with LlamaCppDecoder(model, args.threads, py) as dec:
        res["llamacpp_version"] = dec.info.get("version")
        res["llamacpp_n_batch"] = dec.n_batch
        res["llamacpp_extra_bufts"] = dec.info.get("extra_bufts")
        if dec.fallback:
            res["llamacpp_fallback"] = dec.fallback
        dec.decode(prompt, 8)  # warm-up
        runs = [dec.decode(prompt, args.tokens) for _ in range(args.repeats)]
    res["llamacpp_tok_s"] = median_or_none([r["tok_s"] for r in runs if r["tok_s"]])
    res["llamacpp_tok_s_llama"] = median_or_none([r["tok_s_llama"] for r in runs if r["tok_s_llama"]])
    res["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
