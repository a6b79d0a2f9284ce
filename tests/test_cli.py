"""The command line as a person uses it: one clear line and exit 2 for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from aded_chat.engine.draft.tree import MAX_TREE

CLI = [sys.executable, "-m", "aded_chat"]


def run(*args, stdin: str | None = None, env: dict | None = None):
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def assert_one_line_error(r, needle: str):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and "aded-chat" in r.stdout
    r = run("--help")
    assert r.returncode == 0 and "ask" in r.stdout and "bench" in r.stdout


def test_unknown_flag():
    assert_one_line_error(run("--bogus"), "unrecognized arguments")


def test_missing_model(tmp_path):
    assert_one_line_error(run("ask", "--model", str(tmp_path / "nope.gguf"), "hi"),
                          "model file not found")


def test_not_a_gguf(tmp_path):
    p = tmp_path / "notes.gguf"
    p.write_text("hello")
    assert_one_line_error(run("ask", "--model", str(p), "hi"), "not a GGUF")


def test_corrupt_gguf(tmp_path):
    p = tmp_path / "broken.gguf"
    p.write_bytes(b"GGUF" + os.urandom(4096))
    assert_one_line_error(run("ask", "--model", str(p), "hi"), "cannot load model")


def test_bench_counts_must_be_positive():
    for flag in ("--per-category", "--limit", "--repeat"):
        assert_one_line_error(run("bench", flag, "0"), f"{flag} must be at least 1")
    assert_one_line_error(run("ask", "--threads", "0", "hi"), "--threads must be at least 1")
    assert_one_line_error(run("ask", "--kv-cache", "q4", "hi"), "invalid choice: 'q4'")


def test_empty_prompt():
    assert_one_line_error(run("ask", "   "), "empty prompt")
    assert_one_line_error(run("ask", "-", stdin=""), "empty prompt")


def test_bad_config_names_the_line(tmp_path):
    cfg = tmp_path / "aded-chat"
    cfg.mkdir()
    (cfg / "config.toml").write_text("n_ctx = 4096\nspeculative = yes\n")
    r = run("models", env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert_one_line_error(r, "line 2")


@pytest.mark.model
def test_models_lists_the_embedded_model():
    r = run("models")
    assert r.returncode == 0
    assert "SmolLM2-135M-Instruct" in r.stdout


@pytest.mark.model
def test_ask_streams_an_answer_and_a_stats_line():
    r = run("ask", "--max-tokens", "24", "Say hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    assert "tok/s" in r.stderr and "prompt" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.model
def test_ask_json_from_stdin_is_deterministic_when_greedy():
    outs = []
    for _ in range(2):
        r = run("ask", "--json", "--temperature", "0", "--max-tokens", "24", "--threads",
                "1", "-", stdin="Name three colours.")
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    assert outs[0]["text"] == outs[1]["text"] and outs[0]["text"]
    # the default cache: q8_0 keys, f16 values on a CPU (exact greedy answers), f16 on a GPU
    assert outs[0]["threads"] == 1
    assert outs[0]["kv_cache"] == ("q8_0/f16" if outs[0]["backend"] == "CPU" else "f16")
    stats = outs[0]["stats"]
    assert stats["tokens"] > 0 and stats["tokens_per_s"] > 0 and stats["prompt_tokens"] > 0


@pytest.mark.model
def test_bench_writes_the_report_the_issue_specifies(tmp_path):
    """One prompt, every method, a few tokens: the JSON has what BENCHMARKS.md is built
    from (per prompt and method, and the top-level figures)."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "rep", "category": "edit_code", "messages": [
        {"role": "user", "content": "Repeat exactly: a = 1\nb = 2\nc = 3\nd = 4"}]}) + "\n")
    out = tmp_path / "bench.json"
    r = run("bench", "--prompts", str(prompts), "--max-tokens", "12", "--threads", "2",
            "--kv-cache", "q8_0", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "geomean speedup vs plain" in r.stdout
    rep = json.loads(out.read_text())
    assert rep["settings"]["threads"] == 2 and rep["settings"]["temperature"] == 0.0
    assert rep["settings"]["kv_cache"] == "q8_0"
    assert set(rep["geomean_speedup_vs_plain"]) == {"pld", "aded"}
    assert rep["geomean_speedup_vs_plain"]["aded"]["edit_code"] > 0
    assert rep["verify_cost_s"]["1"] > 0 and rep["aded_median_host_ms"] > 0
    assert len(rep["verify_cost_s"]) == MAX_TREE and rep["cost_curve"] == "measured here"
    assert 0 <= rep["verify_switch_s"] < rep["verify_cost_s"]["1"]
    assert "one token right after a batch +" in r.stdout
    (row,) = rep["prompts"]
    for method in ("plain", "pld", "aded"):
        assert row[method]["tokens"] > 0 and row[method]["decode_seconds"] > 0
        assert row[method]["tokens_per_s"] > 0
    for key in ("steps", "drafted_tokens", "accepted_tokens", "identical_to_plain"):
        assert key in row["aded"]
    assert "identical_to_plain" in row["pld"]
    if not row["aded"]["identical_to_plain"]:
        assert "divergence_index" in row["aded"] and "divergence_logit_gap" in row["aded"]


@pytest.mark.model
def test_bench_on_another_machines_curve_projects_and_says_so(tmp_path):
    """--cost-curve flat: the drafter plans as on a GPU (wide trees), and the report
    carries the projected speedup, labelled as projected, beside the measured one."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "rep", "category": "edit_code", "messages": [
        {"role": "user", "content": "Repeat exactly: a = 1\nb = 2\nc = 3\nd = 4"}]}) + "\n")
    out = tmp_path / "bench.json"
    r = run("bench", "--prompts", str(prompts), "--max-tokens", "24", "--methods",
            "plain,aded", "--cost-curve", "flat", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "PROJECTED on the cost curve flat" in r.stdout
    rep = json.loads(out.read_text())
    assert rep["cost_curve"] == "flat"
    assert len(set(rep["verify_cost_s"].values())) == 1  # the curve it planned against
    (row,) = rep["prompts"]
    assert row["aded"]["projected_speedup"] > 0 and row["aded"]["mean_tree_nodes"] > 2
    assert rep["projected_speedup"]["overall"] == pytest.approx(
        row["aded"]["projected_speedup"])


def test_a_bad_cost_curve_is_one_line(tmp_path):
    bad = tmp_path / "curve.json"
    bad.write_text('{"2": 0.01}')
    assert_one_line_error(run("ask", "--cost-curve", str(bad), "hi"), "batch size 1")
    assert_one_line_error(run("--cost-curve", str(tmp_path / "none.json"), "ask", "hi"),
                          "cannot read cost curve")


def test_root_flags_reach_the_subcommand(tmp_path):
    """`aded-chat --model X ask` must use X (the subcommand's defaults once overwrote
    the root's flags silently)."""
    missing = tmp_path / "nowhere.gguf"
    assert_one_line_error(run("--model", str(missing), "ask", "hi"), str(missing))
    assert_one_line_error(run("ask", "--model", str(missing), "hi"), str(missing))
