"""bench/llamacpp_decode.py without llama.cpp: the ratio fields (null with a reason when it was
not run), the venv probe, and the worker protocol against a stand-in worker."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.append(str(BENCH))

import llamacpp_decode as lcd  # noqa: E402


def test_ratios_against_llamacpp() -> None:
    out = lcd.side_by_side({"nonthink": 190.0, "dense": 150.0, "target_nonthink": None}, 127.0, None)
    assert out == {
        "llamacpp_tok_s": 127.0,
        "nonthink_vs_llamacpp": 1.496,
        "dense_vs_llamacpp": 1.181,
        "target_nonthink_vs_llamacpp": None,
    }
    assert "llamacpp_reason" not in out


def test_absent_llamacpp_gives_null_ratios_and_a_reason() -> None:
    out = lcd.side_by_side({"nonthink": 150.0, "dense": 150.0}, None, "not installed")
    assert out == {
        "llamacpp_tok_s": None,
        "nonthink_vs_llamacpp": None,
        "dense_vs_llamacpp": None,
        "llamacpp_reason": "not installed",
    }
    assert lcd.ratio(1.0, 0.0) is None and lcd.ratio(None, 2.0) is None
    assert lcd.median_or_none([]) is None and lcd.median_or_none([3.0, 1.0, 2.04]) == 2.0


def test_venv_without_llama_cpp_is_absent(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")
    assert lcd.venv_python(tmp_path) is None
    pkg = tmp_path / "lib" / "python3.11" / "site-packages" / "llama_cpp"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    assert lcd.venv_python(tmp_path) == tmp_path / "bin" / "python"


FAKE_WORKER = textwrap.dedent(
    """
    import json, sys
    print(json.dumps({"ready": True, "version": "fake", "argv": sys.argv[1:]}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["n"] < 0:
            print(json.dumps({"error": "bad n"}), flush=True)
        else:
            print(json.dumps({"n": req["n"], "tok_s": 100.0 + len(req["tokens"])}), flush=True)
    """
)


def test_decoder_talks_json_lines_to_its_worker(tmp_path: Path) -> None:
    with lcd.LlamaCppDecoder(tmp_path / "m.gguf", 2, Path(sys.executable), argv=["-c", FAKE_WORKER]) as dec:
        assert dec.info["version"] == "fake"
        assert dec.info["argv"] == ["--model", str(tmp_path / "m.gguf"), "--threads", "2", "--n-batch", "512"]
        assert dec.n_batch == 512 and dec.fallback is None
        assert dec.decode([1, 2, 3], 64) == {"n": 64, "tok_s": 103.0}
        with pytest.raises(RuntimeError, match="bad n"):
            dec.decode([1], -1)
        assert dec.decode([], 1)["tok_s"] == 100.0  # still serving after an error
    assert dec.proc.returncode == 0


CRASHING_WORKER = textwrap.dedent(
    """
    import json, os, sys
    n_batch = int(sys.argv[sys.argv.index("--n-batch") + 1])
    print(json.dumps({"ready": True, "version": "fake"}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if n_batch > 1 and len(req["tokens"]) > 1:
            os._exit(139)  # as a segfault in batched prompt evaluation would
        print(json.dumps({"n": req["n"], "tok_s": 50.0}), flush=True)
    """
)


def test_a_worker_crashing_on_batched_prompts_is_restarted_with_n_batch_1(tmp_path: Path) -> None:
    worker = ["-c", CRASHING_WORKER]
    with lcd.LlamaCppDecoder(tmp_path / "m.gguf", 2, Path(sys.executable), argv=worker) as dec:
        assert dec.n_batch == 1 and dec.info["n_batch"] == 1
        assert dec.fallback is not None and "n_batch 512 crashed" in dec.fallback
        assert dec.decode([1, 2, 3], 8) == {"n": 8, "tok_s": 50.0}


def test_a_worker_that_dies_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited"):
        lcd.LlamaCppDecoder(tmp_path / "m.gguf", 2, Path(sys.executable), argv=["-c", "raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="worker said"):
        lcd.parse_reply("Traceback (most recent call last):")
