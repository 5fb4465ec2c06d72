"""Every example end to end on a tiny config: trains, checkpoints, resumes, plots."""

import dataclasses
import functools
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import train

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import _common  # noqa: E402
import adding  # noqa: E402
import char_lm  # noqa: E402
import classify  # noqa: E402
import forecast  # noqa: E402

TINY_LM = [
    "embed_size=8",
    "hidden_size=16",
    "seq_len=12",
    "batch_size=4",
    "steps=10",
    "eval_every=5",
    "log_every=2",
    "checkpoint_every=4",
    "sample_length=20",
]


def lm_config(*overrides):
    return train.load_config(char_lm.Config, char_lm.CONFIG, [*TINY_LM, *overrides])


def _interrupt_at(stop_step):
    def callback(step, state, metrics):
        del state, metrics
        if step == stop_step:
            raise KeyboardInterrupt

    return callback


def _snapshot(directory: pathlib.Path):
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _assert_same_tree(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_configs_load_with_their_schemas():
    for module in (char_lm, adding, classify, forecast):
        train.load_config(module.Config, module.CONFIG)


@pytest.mark.slow
def test_char_lm_trains_resumes_and_samples(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat. " * 40)
    config = lm_config(f"text_path={text}", "cell=gru", "num_layers=2", "dropout=0.1")
    out = char_lm.train_and_evaluate(config, tmp_path / "run")
    assert not out.interrupted and out.step == 10
    assert out.summary["val_bpc"] < out.summary["unigram_bpc"] + 1.0
    # The throughput is the median of the logged intervals' rates (5 of them here).
    records = train.read_metrics(tmp_path / "run" / "metrics.jsonl", split="train")
    rates = [r["items_per_s"] for r in records]
    assert len(rates) == 5 and out.summary["chars_per_s"] == np.median(rates)
    for name in ("curves.png", "metrics.jsonl", "config.json", "vocab.json", "samples.txt"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["10", "4", "8"]

    # Running again resumes at the end and changes nothing; more steps continue it.
    again = char_lm.train_and_evaluate(config, tmp_path / "run")
    assert again.step == 10
    _assert_same_tree(again.state, out.state)
    longer = char_lm.train_and_evaluate(dataclasses.replace(config, steps=12), tmp_path / "run")
    assert longer.step == 12

    capsys.readouterr()
    code = char_lm.main(
        [
            "sample",
            "--workdir",
            str(tmp_path / "run"),
            "--prompt",
            "the c",
            "--length",
            "40",
            "--temperature",
            "0.5",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and printed.startswith("the c") and len(printed.rstrip("\n")) >= 45
    assert set(printed) <= set("the cat sat on the mat. \n")


@pytest.mark.slow
def test_char_lm_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    config = lm_config("steps=14")  # the default corpus: Python's own documentation
    straight = char_lm.train_and_evaluate(config, tmp_path / "straight")
    stopped = char_lm.train_and_evaluate(config, tmp_path / "resumed", callbacks=[_interrupt_at(6)])
    assert stopped.interrupted and stopped.step == 6
    resumed = char_lm.train_and_evaluate(config, tmp_path / "resumed")
    assert resumed.step == 14
    # Parameters, Adam moments and the carried TBPTT state all match exactly.
    _assert_same_tree(resumed.state, straight.state)
    assert resumed.summary["sample"] == straight.summary["sample"]


def test_char_lm_reset_prob_zeroes_exactly_the_chosen_streams():
    config = lm_config("num_layers=2", "batch_size=64")
    params = char_lm.init_params(jax.random.key(0), config, vocab_size=5)
    zeros = jaxrnn.initial_carry(params["layers"], (config.batch_size,))
    carry = jax.tree.map(lambda c: jnp.arange(c.size, dtype=c.dtype).reshape(c.shape) + 1, zeros)
    key = jax.random.key(3)
    for prob in (0.0, 0.3, 1.0):
        # The chosen streams, drawn independently of the code under test.
        chosen = np.asarray(jax.random.bernoulli(key, prob, (config.batch_size,)))
        out = char_lm.reset_streams(carry, key, prob)
        for before, after in zip(jax.tree.leaves(carry), jax.tree.leaves(out), strict=True):
            before, after = np.asarray(before), np.asarray(after)
            np.testing.assert_array_equal(after[chosen], 0)
            np.testing.assert_array_equal(after[~chosen], before[~chosen])
        expected = {0.0: 0, 1.0: config.batch_size}.get(prob)
        assert chosen.sum() == expected if expected is not None else 0 < chosen.sum() < 64


@pytest.mark.slow
def test_char_lm_reset_prob_resumes_bit_exactly(tmp_path):
    config = lm_config("steps=8", "reset_prob=0.5")
    straight = char_lm.train_and_evaluate(config, tmp_path / "straight")
    stopped = char_lm.train_and_evaluate(config, tmp_path / "resumed", callbacks=[_interrupt_at(4)])
    assert stopped.interrupted
    resumed = char_lm.train_and_evaluate(config, tmp_path / "resumed")
    _assert_same_tree(resumed.state, straight.state)
    # Some streams were reset: the carried state differs from a run without resets.
    plain = char_lm.train_and_evaluate(dataclasses.replace(config, reset_prob=0.0), tmp_path / "p")
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(plain.state), jax.tree.leaves(straight.state), strict=True)
    )
    with pytest.raises(train.ConfigError, match="reset_prob"):
        lm_config("reset_prob=1.5")


@pytest.mark.slow  # the fast lane's time: see README
def test_char_lm_output_dropout_acts_in_training_only():
    config = lm_config("output_dropout=0.5")
    params = char_lm.init_params(jax.random.key(0), config, vocab_size=7)
    carry = jaxrnn.initial_carry(params["layers"], (config.batch_size,))
    ids = jax.random.randint(jax.random.key(1), (5, config.batch_size), 0, 7)
    plain = dataclasses.replace(config, output_dropout=0.0)
    loss = functools.partial(char_lm.chunk_loss, params=params, carry=carry, ids=ids, targets=ids)
    # Evaluation (no key) ignores it; training with a key applies it, the same for the same key.
    np.testing.assert_array_equal(loss(config)[0], loss(plain)[0])
    key = jax.random.key(2)
    assert loss(config, key=key)[0] != loss(plain, key=key)[0]
    np.testing.assert_array_equal(loss(config, key=key)[0], loss(config, key=key)[0])
    # Inverted dropout: a `rate` share of zeros, the rest scaled so the mean is kept.
    x = jnp.full((200, 500), 3.0)
    out = np.asarray(char_lm.dropout(jax.random.key(3), x, 0.3))
    assert set(np.unique(out)) == {0.0, np.float32(3.0 / 0.7)}
    assert abs((out == 0).mean() - 0.3) < 0.01
    assert abs(out.mean() - 3.0) < 0.05
    with pytest.raises(train.ConfigError, match="output_dropout"):
        lm_config("output_dropout=1.0")


def test_char_lm_lr_decay_follows_a_cosine_to_its_floor():
    steps, lr = 50, 0.01
    for decay in (1.0, 0.1, 0.0):
        config = lm_config(f"steps={steps}", f"lr={lr}", f"lr_decay={decay}", "clip_norm=1e9")
        optimizer = char_lm.make_optimizer(config)
        params = {"w": jnp.zeros(())}
        state = optimizer.init(params)
        sizes = []
        for _ in range(steps + 1):  # Adam's update of a constant gradient is the rate
            updates, state = optimizer.update({"w": jnp.ones(())}, state, params)
            sizes.append(-float(updates["w"]))
        np.testing.assert_allclose(sizes[0], lr, rtol=1e-3)
        np.testing.assert_allclose(sizes[steps // 2], lr * (1 + decay) / 2, rtol=1e-3)
        np.testing.assert_allclose(sizes[steps], lr * decay, rtol=1e-3, atol=1e-9)
    with pytest.raises(train.ConfigError, match="lr_decay"):
        lm_config("lr_decay=2")


def test_char_lm_bad_input_is_a_clear_error_and_loses_nothing(tmp_path, capsys):
    def run(*overrides):
        with pytest.raises(SystemExit) as info:
            char_lm.main(["--workdir", str(tmp_path / "run"), *TINY_LM, *overrides])
        assert info.value.code == 2
        return capsys.readouterr().err

    assert "text_path: the file" in run(f"text_path={tmp_path / 'missing.txt'}")
    (tmp_path / "empty.txt").write_text("")
    assert "is empty" in run(f"text_path={tmp_path / 'empty.txt'}")
    (tmp_path / "short.txt").write_text("too short")
    assert "has 9 characters; at least" in run(f"text_path={tmp_path / 'short.txt'}")
    assert "hidden_sise: unknown key (did you mean 'hidden_size'?)" in run("hidden_sise=3")
    assert "steps: expected int, got str 'lots'" in run("steps=lots")

    assert char_lm.main(["--workdir", str(tmp_path / "run"), *TINY_LM, "steps=4"]) == 0
    before = _snapshot(tmp_path / "run")
    assert "hidden_size: the checkpoint" in run("steps=6", "hidden_size=32")
    (tmp_path / "other.txt").write_text("a different text entirely. " * 40)
    assert "the text differs" in run("steps=6", f"text_path={tmp_path / 'other.txt'}")
    assert _snapshot(tmp_path / "run") == before

    # A corrupt checkpoint: a clear error, and the files stay as they were.
    for path in (tmp_path / "run" / "checkpoints" / "4").rglob("*"):
        if path.is_file() and path.suffix != ".txt" and path.stat().st_size > 0:
            path.write_bytes(b"not a checkpoint")
    before = _snapshot(tmp_path / "run")
    assert "cannot be read" in run("steps=6")
    with pytest.raises(SystemExit):
        char_lm.main(["sample", "--workdir", str(tmp_path / "run")])
    assert "cannot be read" in capsys.readouterr().err
    assert _snapshot(tmp_path / "run") == before
    with pytest.raises(SystemExit):
        char_lm.main(["sample", "--workdir", str(tmp_path / "nothing-here")])
    assert "train a model" in capsys.readouterr().err


def test_samples_keep_one_entry_per_step(tmp_path):
    path = tmp_path / "samples.txt"
    for step, bpc in ((5, 3.0), (10, 2.5), (15, 2.0), (10, 2.5), (15, 2.0)):  # resumed at 5
        char_lm.write_sample(path, step, bpc, f"text at {step}")
    entries = path.read_text().split("--- ")[1:]
    assert [e.split(",")[0] for e in entries] == ["step 5", "step 10", "step 15"]
    assert entries[1] == "step 10, bpc 2.500\ntext at 10\n"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_saves_and_the_same_command_resumes_bit_exact(tmp_path, signum):
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        str(ROOT / "examples" / "char_lm.py"),
        "--workdir",
        str(workdir),
        *TINY_LM,
        "steps=100000",
        "log_every=1",
        "eval_every=3",
        "checkpoint_every=100000",
        "sample_length=5",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 240
    metrics = workdir / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()[0].decode()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.2)
    proc.send_signal(signum)
    output = proc.communicate(timeout=240)[0].decode()
    assert proc.returncode == 128 + signum, output  # 130 for Ctrl-C, 143 for SIGTERM
    name = signal.Signals(signum).name
    assert f"Interrupted ({name}): saved a checkpoint at step" in output
    assert "Traceback" not in output
    (saved,) = os.listdir(workdir / "checkpoints")
    assert int(saved) >= 2

    steps = f"steps={int(saved) + 4}"
    command[command.index("steps=100000")] = steps
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Resuming from the checkpoint at step {saved}" in done.stdout
    assert "bits/char" in done.stdout
    if signum == signal.SIGINT:
        return  # the same path as SIGTERM's below; exactness after Ctrl-C is tested in-process
    # Bit-exact: every step's loss and every evaluation as in a run never stopped.
    straight = tmp_path / "straight"
    command[command.index(str(workdir))] = str(straight)
    subprocess.run(command, capture_output=True, text=True, env=env, timeout=240, check=True)

    def records(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        drop = ("items_per_s", "devices", "time")
        return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]

    assert records(workdir) == records(straight)
    steps = re.findall(r"^--- step (\d+)", (workdir / "samples.txt").read_text(), re.MULTILINE)
    assert len(steps) == len(set(steps)) >= 2, steps  # no entry twice after the resume
    assert (workdir / "samples.txt").read_text() == (straight / "samples.txt").read_text()


@pytest.mark.slow
def test_adding_problem_runs_resumes_and_plots(tmp_path):
    config = train.load_config(
        adding.Config,
        adding.CONFIG,
        [
            "seq_len=8",
            "hidden_size=8",
            "batch_size=8",
            "steps=6",
            "eval_size=16",
            "eval_every=3",
            "log_every=2",
            "checkpoint_every=4",
        ],
    )
    calls = []

    def interrupt_in_the_last_cell(step, state, metrics):
        calls.append(step)
        if len(calls) == 6 + 6 + 3:  # rnn and lstm done, gru at step 3
            raise KeyboardInterrupt

    stopped = adding.train_and_evaluate(config, tmp_path, callbacks=[interrupt_in_the_last_cell])
    assert stopped.interrupted
    assert sorted(os.listdir(tmp_path / "gru" / "checkpoints")) == ["3"]
    out = adding.train_and_evaluate(config, tmp_path)  # rnn, lstm: already done; gru resumes
    assert set(out.summary["mse"]) == {"rnn", "lstm", "gru"}
    for name in (
        "loss.png",
        "hidden_grad_norms.png",
        "rnn_gain.png",
        "clipping.png",
        "summary.json",
        "rnn/curves.png",
        "lstm/checkpoints/6",
    ):
        assert (tmp_path / name).exists(), name


def test_read_text_errors(tmp_path):
    with pytest.raises(train.DataError, match=r"text_path: the file .* does not exist"):
        _common.read_text(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(train.DataError, match="is empty"):
        _common.read_text(tmp_path / "empty.txt")
    with pytest.raises(train.DataError, match="is not a regular file"):
        _common.read_text(tmp_path)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    assert _common.read_text(tmp_path / "latin1.txt") == "caf\xe9"


def test_make_batch_is_the_adding_problem():
    xs, targets = adding.make_batch(jax.random.key(0), 500, 20)
    values, markers = np.asarray(xs[..., 0]), np.asarray(xs[..., 1])
    assert xs.shape == (20, 500, 2) and (markers[:10].sum(0) == 1).all()
    assert (markers[10:].sum(0) == 1).all()
    np.testing.assert_allclose(targets, (values * markers).sum(0), rtol=1e-6)
    assert abs(float(np.mean((targets - 1.0) ** 2)) - 1 / 6) < 0.03  # the 0.167 baseline


@pytest.mark.slow
def test_adding_problem_gates_beat_the_vanishing_gradient(tmp_path):
    """At T = 60 the tanh RNN stays at the baseline while the LSTM and GRU learn."""
    config = train.load_config(
        adding.Config,
        adding.CONFIG,
        [
            "seq_len=60",
            "hidden_size=32",
            "steps=400",
            "lr=0.005",
            "eval_size=500",
            "eval_every=400",
            "log_every=100",
            "checkpoint_every=400",
        ],
    )
    mse = adding.train_and_evaluate(config, tmp_path).summary["mse"]
    assert mse["rnn"] > 0.12, mse
    assert mse["lstm"] < 0.06 and mse["gru"] < 0.06, mse


@pytest.mark.slow
def test_classifier_trains_resumes_and_plots(tmp_path):
    config = train.load_config(
        classify.Config,
        classify.CONFIG,
        [
            "hidden_size=16",
            "num_layers=2",
            "dropout=0.1",
            "steps=40",
            "eval_every=20",
            "log_every=10",
            "checkpoint_every=15",
            "lr=0.01",
        ],
    )
    stopped = classify.train_and_evaluate(config, tmp_path, callbacks=[_interrupt_at(20)])
    assert stopped.interrupted
    out = classify.train_and_evaluate(config, tmp_path)
    assert out.step == 40 and out.summary["test_accuracy"] > 0.5  # chance is 0.1
    assert (tmp_path / "confusion.png").exists() and (tmp_path / "curves.png").exists()


@pytest.mark.parametrize("series", ["sunspots", "co2"])
@pytest.mark.slow
def test_forecaster_trains_resumes_and_beats_nothing_silly(tmp_path, series):
    config = train.load_config(
        forecast.Config,
        forecast.CONFIG,
        [
            f"series={series}",
            "hidden_size=8",
            "steps=20",
            "eval_every=10",
            "log_every=5",
            "checkpoint_every=8",
            "context=12",
        ],
    )
    stopped = forecast.train_and_evaluate(config, tmp_path, callbacks=[_interrupt_at(9)])
    assert stopped.interrupted
    out = forecast.train_and_evaluate(config, tmp_path)
    errors = out.summary["errors"]
    assert set(errors) == {"gru", "persistence", f"AR({out.summary['ar_order']})"}
    assert all(np.isfinite(e["rmse"]) for e in errors.values())
    assert (tmp_path / "forecast.png").exists()


def test_ar_baseline_recovers_a_known_process():
    rng = np.random.default_rng(0)
    values = np.zeros(2000)
    for t in range(2, 2000):
        values[t] = 0.5 + 0.6 * values[t - 1] - 0.3 * values[t - 2] + 0.1 * rng.normal()
    coef = forecast.fit_ar(values, 2, 2000)
    np.testing.assert_allclose(coef, [0.5, 0.6, -0.3], atol=0.03)
    assert forecast.choose_ar_order(values, 6, 2000, 300) >= 2


@pytest.mark.parametrize(
    "module, args, message",
    [
        (char_lm, ["cell_options={dtype: bfloat16}"], "cell_options: dtype is not an option here"),
        (char_lm, ["cell_options={dtype: int32}"], "cell_options: dtype is not an option here"),
        (char_lm, ["cell_options={bogus: 1}"], "cell_options: unexpected option 'bogus'; its"),
        (char_lm, ["cell=mingru", "cell_options={x: 1}"], "cell_options: .* it has no options"),
        (char_lm, ["cell=conv_lstm"], "cell: expected cells that read feature vectors"),
        (char_lm, ["dropout=0.2", "num_layers=1"], "dropout: acts between layers"),
        (char_lm, ["precision=float16"], "precision: expected one of"),
        (char_lm, ["lr=1" + "0" * 400], "lr: expected a float, got an int too large"),
        (adding, ["cells=lstm,lstm"], "cells: expected each cell once, got 'lstm' twice"),
        (adding, ["cells=gru,conv_lstm"], "cells: expected cells that read feature vectors"),
    ],
)
def test_bad_configs_are_refused_before_anything_is_written(
    tmp_path, capsys, module, args, message
):
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit:
        module.main(["--workdir", str(workdir), *args])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("cell_options:") <= 1, err
    assert not workdir.exists()


def test_a_config_file_of_ones_own_is_merged_over_the_examples(tmp_path, capsys):
    with pytest.raises(SystemExit):
        char_lm.main(["--config", str(tmp_path), "--workdir", str(tmp_path / "run")])
    assert "is a directory; expected a YAML or JSON file" in capsys.readouterr().err
    partial = tmp_path / "mine.yaml"
    partial.write_text("steps: 3\nhidden_size: 7\n")  # the other keys from configs/char_lm.yaml
    from jaxrnn.train._cli import _parse_run

    argv = ["--config", str(partial)]
    config, _ = _parse_run(char_lm.Config, argv, config=char_lm.CONFIG, workdir=tmp_path)
    assert (config.steps, config.hidden_size, config.seq_len) == (3, 7, 64)
