"""The benchmark suite runs end to end on a tiny shape (no timing is checked)."""

import json

import pytest

# Each runs a worker process or a benchmark script: the full suite only.
pytestmark = pytest.mark.slow

pytest.importorskip("torch")
run = pytest.importorskip("benchmarks.run")
stacks = pytest.importorskip("benchmarks.stacks")


def test_suite_runs_and_writes_results(tmp_path):
    argv = ["--shapes", "2,3,4", "--rounds", "1", "--min-time", "0", "--out-dir", str(tmp_path)]
    argv += ["--memory-T", "9", "--memory-batch", "2", "--memory-hidden", "4"]
    argv += ["--memory-rounds", "1", "--stack-shape", "3,5,4", "--char-lm-hidden", "8"]
    argv += ["--compile-repeats", "1", "--compile-shape", "2,3,4", "--compile-long-shape", "1,40,4"]
    argv += ["--parallel-shapes", "2,20,4", "--cells", "lstm", "--stack-cells", "gru"]
    run.main([*argv, "--compile-no-torch"])
    results = json.loads((tmp_path / "results.json").read_text())
    cases = {(r["cell"], r["mode"]) for r in results["speed"]}
    assert cases == {("lstm", m) for m in ("forward", "train")}
    for r in results["speed"]:
        assert {"pytorch", "jaxrnn"} <= set(r["timing"])
        assert r["timing"]["pytorch"]["vs_pytorch"] == 1.0
    stack_cases = {(r["cell"], r["mode"], r["lengths"]) for r in results["stacks"]}
    assert stack_cases == {("gru", m, lengths) for m in ("forward", "train") for lengths in (1, 0)}
    for r in results["stacks"]:
        assert set(r["timing"]) == set(stacks.implementations(r["cell"]))
        assert set(r["layer_overhead"]) == {"jaxrnn.linen", "jaxrnn.nnx"}
    (memory,) = results["memory"]
    assert memory["T"] == 9 and memory["remat"]["peak_bytes"] > 0
    (char_lm,) = results["char_lm"]
    assert char_lm["hidden_size"] == 8 and char_lm["ratio"] > 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## Targets" in text and "jaxrnn" in text and "bidirectional stacks" in text
    assert "char LM's training step end to end" in text
    assert len(results["compile"]) == 6 and all(r["jaxrnn_s"] > 0 for r in results["compile"])
    compiled = {r["program"].split(",")[0]: r for r in results["compile"]}
    assert compiled["lstm scan"]["flax_s"] > 0 and compiled["lstm scan"]["met"] is not None
    assert compiled["minGRU training step"]["other"][1] > 0  # its sequential scan
    assert "## Compile time" in text and "compile: " in text  # the table and its targets
    (par,) = results["parallel"]
    assert par["vs_sequential"] > 0 and par["minlstm_vs_sequential"] > 0
    assert "## minGRU and minLSTM trained in parallel" in text


def test_a_negative_compile_repeats_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit):
        run.main(["--compile-repeats", "-1"])
    assert "--compile-repeats: expected 0 or more, got -1" in capsys.readouterr().err


def test_pytorch_first_call_runs_in_a_fresh_process():
    compile_time = pytest.importorskip("benchmarks.compile_time")
    seconds = compile_time.torch_first_call("peers.torch_case", "gru", "train", 2, 3, 4, 4)
    assert seconds is not None and 0 < seconds < 60


def test_stacks_runs_with_and_without_lengths():
    argv = ["--cells", "gru", "--modes", "forward", "--shape", "2,3,4", "--rounds", "1"]
    rows = stacks.main([*argv, "--min-time", "0", "--only", "pytorch"])
    assert [r["lengths"] for r in rows] == ["yes", "no"]
    assert all(set(r["ratio"]) == {"pytorch"} and r["ratio"]["pytorch"] > 0 for r in rows)
    assert set(stacks.implementations("gru", lengths=False)) == set(stacks.implementations("gru"))


def test_profile_runs():
    profile = pytest.importorskip("benchmarks.profile")
    rows = profile.main(["--cell", "gru", "--mode", "train", "--shape", "2,3,4", "--top", "3"])
    assert rows and all(ms >= 0 for _, ms, _ in rows)


def test_char_lm_e2e_runs():
    e2e = pytest.importorskip("benchmarks.char_lm_e2e")
    argv = ["--hidden-size", "8", "--batch-size", "2", "--seq-len", "3", "--rounds", "1"]
    (row,) = e2e.main([*argv, "--min-time", "0"])
    assert row["jaxrnn_chars_per_s"] > 0 and row["pytorch_chars_per_s"] > 0


def test_parallel_runs_and_writes_results(tmp_path):
    parallel = pytest.importorskip("benchmarks.parallel")
    argv = ["--shapes", "2,40,4", "--rounds", "1", "--min-time", "0", "--no-accuracy"]
    results = parallel.main([*argv, "--no-blocks", "--no-gated", "--out-dir", str(tmp_path)])
    (case,) = results["training"]
    assert (case["B"], case["T"]) == (2, 40) and case["vs_sequential"] > 0
    assert "minGRU" in (tmp_path / "RESULTS_parallel.md").read_text()


def test_parallel_times_the_gated_recurrences_and_recurrentgemma(tmp_path):
    parallel = pytest.importorskip("benchmarks.parallel")
    argv = ["--shapes", "2,20,4", "--rounds", "1", "--min-time", "0", "--only-gated", "--no-parity"]
    (case,) = parallel.main([*argv, "--out-dir", str(tmp_path)])["gated"]
    assert set(case["cells"]) == {"rglru", "hawk", "lru", "s6"}
    assert case["vs_recurrentgemma_train"] > 0
    assert "RecurrentGemma" in (tmp_path / "RESULTS_gated.md").read_text()


def test_variants_and_recurrent_dropout_run(tmp_path):
    variants = pytest.importorskip("benchmarks.variants")
    out = tmp_path / "variants.md"
    argv = ["--shape", "2,3,4", "--variants", "lstm", "peephole", "--rounds", "1"]
    variants.main([*argv, "--min-time", "0", "--no-autodiff", "--out", str(out)])
    assert "peephole" in out.read_text()
    dropout = pytest.importorskip("benchmarks.recurrent_dropout")
    result = dropout.main(["--shape", "2,3,4", "--rounds", "1", "--min-time", "0"])
    assert result["ratio"] > 0


def test_xlstm_runs_and_writes_results(tmp_path):
    xlstm = pytest.importorskip("benchmarks.xlstm")
    argv = ["--slstm-shapes", "--mlstm-shapes", "1,64,4,2", "--rounds", "1"]  # no sLSTM
    results = xlstm.main([*argv, "--min-time", "0", "--out-dir", str(tmp_path)])
    (mlstm,) = results["mlstm"]
    assert {"mlstm chunkwise", "package chunkwise", "package step loop"} <= set(mlstm["ms"])
    assert "## mLSTM" in (tmp_path / "RESULTS_xlstm.md").read_text()
