"""The capability suite (benchmarks/capabilities): each task's generator against a plain
Python rendering of its definition, the sizing rule, the claims' verdicts, and a smoke run
of every task that resumes."""

import functools
import json
import shutil

import jax
import numpy as np
import pytest

from benchmarks.capabilities import (
    TASKS,
    adding,
    claims,
    delayed_recall,
    induction,
    model,
    mqar,
    parity,
    selective_copy,
    suite,
)


@functools.cache
def _jitted(make_batch):
    return jax.jit(make_batch, static_argnums=(1, 2))


def _batch(module_or_task, split, n=5, seed=0):
    make = _jitted(module_or_task.make_batch)
    return jax.tree.map(np.asarray, make(jax.random.key(seed), n, split))


def _columns(batch):
    """Each sequence's ``(xs, targets, weights)`` as Python lists."""
    return [tuple(a[:, b].tolist() for a in batch) for b in range(batch.xs.shape[1])]


@pytest.mark.parametrize("split", ["train", "test"])
def test_parity_targets_are_running_parities_scored_on_the_split_lengths(split):
    length, first = (40, 3) if split == "train" else (256, 40)
    for bits, targets, weights in _columns(_batch(parity, split)):
        assert len(bits) == length and set(bits) <= {0, 1}
        running = 0
        for t, bit in enumerate(bits):
            running ^= bit
            assert targets[t] == running
            assert weights[t] == (1.0 if t + 1 >= first else 0.0)


def test_selective_copy_targets_are_the_data_tokens_in_order():
    span, k = selective_copy.SPAN, selective_copy.NUM_TOKENS
    for xs, targets, weights in _columns(_batch(selective_copy, "train")):
        data = [x for x in xs[:span] if x != selective_copy.NOISE]
        assert len(data) == k and all(0 <= x < selective_copy.VOCAB for x in data)
        assert xs[span:] == [selective_copy.MARKER] * k
        assert targets[span:] == data
        assert weights == [0.0] * span + [1.0] * k


def test_mqar_answers_are_the_queried_keys_values():
    p, offset = mqar.NUM_PAIRS, mqar.VALUE_OFFSET
    for xs, targets, weights in _columns(_batch(mqar, "train")):
        keys, values = xs[0 : 2 * p : 2], xs[1 : 2 * p : 2]
        assert len(set(keys)) == p and all(k < mqar.NUM_KEYS for k in keys)
        memory = {k: v - offset for k, v in zip(keys, values, strict=True)}
        queries = xs[2 * p :]
        assert sorted(queries) == sorted(keys)
        assert targets[2 * p :] == [memory[q] for q in queries]
        assert weights == [0.0] * (2 * p) + [1.0] * p


def test_delayed_recall_targets_the_pattern_after_the_marker():
    n, delay = delayed_recall.PATTERN, delayed_recall.DELAY
    for xs, targets, weights in _columns(_batch(delayed_recall, "train")):
        bits = xs[:n]
        assert set(bits) <= {0, 1}
        assert xs[n : n + delay] == [delayed_recall.BLANK] * delay
        assert xs[n + delay :] == [delayed_recall.GO] + [delayed_recall.BLANK] * (n - 1)
        assert targets[n + delay :] == bits
        assert weights == [0.0] * (n + delay) + [1.0] * n


@pytest.mark.parametrize("split", ["train", "test"])
def test_induction_target_follows_the_triggers_earlier_occurrence(split):
    length = induction.TRAIN_LEN if split == "train" else induction.TEST_LEN
    for xs, targets, weights in _columns(_batch(induction, split)):
        assert len(xs) == length and xs[-1] == induction.TRIGGER
        earlier = [t for t, x in enumerate(xs[:-1]) if x == induction.TRIGGER]
        assert len(earlier) == 1 and earlier[0] + 1 < length - 1
        assert targets[-1] == xs[earlier[0] + 1]
        assert weights == [0.0] * (length - 1) + [1.0]


def test_adding_scores_the_sum_of_the_marked_values_at_the_last_step():
    batch = _batch(adding.ADDING_100, "train")
    for b in range(batch.xs.shape[1]):
        values, markers = batch.xs[:, b, 0], batch.xs[:, b, 1]
        marked = [float(v) for v, m in zip(values, markers, strict=True) if m == 1]
        assert len(marked) == 2
        np.testing.assert_allclose(batch.targets[-1, b], sum(marked), rtol=1e-6)
    assert batch.weights[:-1].sum() == 0 and (batch.weights[-1] == 1).all()


def test_generators_are_pure_functions_of_their_key():
    # The same shapes as the tests above: the compiled generators are reused.
    for module in (parity, selective_copy, mqar, delayed_recall, induction, adding.ADDING_100):
        a, b, c = (_batch(module, "train", seed=s) for s in (0, 0, 1))
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
        assert not np.array_equal(a.xs, c.xs)
    # Every cell of a task draws from the same keys; training and testing from different ones.
    task = TASKS["mqar"]
    init, train, test = (jax.random.key_data(k) for k in suite._task_keys(task, 0))
    assert not np.array_equal(train, test) and not np.array_equal(init, train)
    np.testing.assert_array_equal(jax.random.key_data(suite._task_keys(task, 0)[1]), train)


def test_lstm_hidden_size_is_closest_to_the_target():
    # An LSTM layer reading d features has 4h(d + h + 1) parameters: here d = EMBED, then h.
    def lstm_count(h):
        return 4 * h * (model.EMBED + h + 1) + 4 * h * (2 * h + 1)

    h = model.hidden_size("lstm")
    assert model.recurrent_params("lstm", h) == lstm_count(h)
    gap = abs(lstm_count(h) - model.TARGET_PARAMS)
    assert gap <= min(abs(lstm_count(g) - model.TARGET_PARAMS) for g in range(8, 200))


def test_claims_verdicts_follow_the_thresholds():
    def result(task, cell, metric):
        return {"task": task, "cell": cell, "metric": metric, "skill": TASKS[task].skill(metric)}

    parity_claim = next(c for c in claims.CLAIMS if c.task == "parity")
    solved = [result("parity", "lstm", 0.99), result("parity", "mingru", 0.52)]
    assert claims.check(parity_claim, solved, TASKS)[0] == "reproduced"
    half = [result("parity", "lstm", 0.60), result("parity", "mingru", 0.52)]
    assert claims.check(parity_claim, half, TASKS)[0] == "partly reproduced"
    wrong = [result("parity", "lstm", 0.5), result("parity", "mingru", 0.99)]
    assert claims.check(parity_claim, wrong, TASKS)[0] == "not reproduced"
    assert claims.check(parity_claim, [], TASKS)[0] == "not run"
    # The adding problem: lower is better, chance is 1/6.
    adding_claim = next(c for c in claims.CLAIMS if c.task == "adding-100")
    ok = [result("adding-100", "lstm", 0.001), result("adding-100", "rnn", 0.17)]
    assert claims.check(adding_claim, ok, TASKS)[0] == "reproduced"
    mqar_claim = next(c for c in claims.CLAIMS if c.task == "mqar")
    pair = [result("mqar", "mlstm", 0.9), result("mqar", "lstm", 0.95)]
    verdict, figures = claims.check(mqar_claim, pair, TASKS)
    assert verdict == "not reproduced" and "lstm 0.95" in figures


@pytest.mark.slow
def test_quick_run_writes_the_table_and_heat_map_and_resumes(tmp_path, capsys):
    # One cell on every task, a second on one (each quick run is mostly compilation).
    runs = ["--quick", "--workdir", str(tmp_path / "runs")]
    assert suite.main([*runs, "--cells", "mingru", "--out", str(tmp_path / "one")]) == 0
    assert suite.main([*runs, "--cells", "rnn", "--tasks", "mqar", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "one" / suite.DATA).read_text())["results"]
    assert [(r["task"], r["cell"]) for r in results] == [(t, "mingru") for t in TASKS]
    for r in results:
        assert np.isfinite(r["metric"]) and 0 <= r["skill"] <= 1 and r["seconds"] > 0
        assert r["hidden_size"] == model.hidden_size(r["cell"])
    text = (tmp_path / "one" / suite.TABLE).read_text()
    assert all(t.title in text for t in TASKS.values()) and "## Published claims" in text
    assert (tmp_path / "one" / suite.FIGURE).stat().st_size > 10_000

    # A run stopped after its checkpoint at step 2 resumes from it to the same result.
    run = tmp_path / "runs" / "mqar" / "rnn"
    straight = json.loads((run / "result.json").read_text())
    (run / "result.json").unlink()
    shutil.rmtree(run / "checkpoints" / str(straight["config"]["steps"]))
    capsys.readouterr()
    both = ["--cells", "mingru,rnn", "--tasks", "mqar", "--out", str(tmp_path / "both")]
    assert suite.main([*runs, *both]) == 0
    out = capsys.readouterr().out
    assert "Resuming from the checkpoint at step 2" in out and out.count("eval accuracy") == 1
    results = json.loads((tmp_path / "both" / suite.DATA).read_text())["results"]
    assert [r["cell"] for r in results] == ["mingru", "rnn"]
    assert results[1]["metric"] == straight["metric"]

    # Run again: every run is read back, none trained again.
    assert suite.main([*runs, "--cells", "mingru", "--out", str(tmp_path / "again")]) == 0
    assert "step " not in capsys.readouterr().out
    again = json.loads((tmp_path / "again" / suite.DATA).read_text())["results"]
    assert again == json.loads((tmp_path / "one" / suite.DATA).read_text())["results"]


def test_spatial_cells_are_skipped():
    cells, skipped = suite.vector_cells()
    assert "conv_lstm" in skipped and "conv_lstm" not in cells and "lstm" in cells


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--cells", "conv_lstm"], "--cells: expected cells that read vectors"),
        (["--cells", "lstm,nope"], "--cells: expected names from"),
        (["--tasks", "sorting"], "--tasks: expected names from"),
        (["--scale", "0"], "--scale: expected a number > 0"),
    ],
)
def test_bad_names_are_one_line_errors(argv, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        suite.main([*argv, "--workdir", str(tmp_path)])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_scale_multiplies_every_tasks_steps_and_nothing_else():
    for task in TASKS.values():
        scaled = suite.budget_of(task, scale=2.5)
        assert scaled.steps == round(2.5 * task.budget.steps)
        assert (scaled.batch_size, scaled.lr) == (task.budget.batch_size, task.budget.lr)
        assert suite.budget_of(task, quick=True) == task.quick
