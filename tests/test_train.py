"""jaxrnn.train: configs, checkpoints, metrics and the resumable loop."""

import dataclasses
import json
import os
import pathlib
import typing

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrnn import train


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 10
    lr: float = 0.1
    name: str = "run"
    cell: typing.Literal["lstm", "gru"] = "lstm"
    text_path: str | None = None
    shuffle: bool = True
    hidden: int = 4


# ---------------------------------------------------------------- config


def test_config_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\nlr: 1\ncell: gru\n")
    config = train.load_config(Config, path, ["lr=0.5", "text_path=data.txt", "shuffle=false"])
    assert config == Config(steps=20, lr=0.5, cell="gru", text_path="data.txt", shuffle=False)
    assert isinstance(train.load_config(Config, path).lr, float)  # an int is a valid float
    json_path = tmp_path / "c.json"
    json_path.write_text(json.dumps({"name": "x", "text_path": None}))
    assert train.load_config(Config, json_path).name == "x"


@pytest.mark.parametrize(
    "file_text, overrides, message",
    [
        ("stesp: 3\n", [], "stesp: unknown key (did you mean 'steps'?)"),
        ("", ["hiden=3"], "hiden: unknown key (did you mean 'hidden'?)"),
        ("steps: 2.5\n", [], "steps: expected int, got float 2.5"),
        ("", ["steps=many"], "steps: expected int, got str 'many'"),
        ("", ["steps=true"], "steps: expected int, got bool True"),
        ("", ["lr=fast"], "lr: expected float, got str 'fast'"),
        ("", ["cell=rnn"], "cell: expected one of 'lstm', 'gru', got str 'rnn'"),
        ("", ["shuffle=1"], "shuffle: expected bool, got int 1"),
        ("", ["name=3"], "name: expected str, got int 3"),
        ("", ["text_path=3"], "text_path: expected str or null, got int 3"),
        ("", ["steps"], "'steps': expected an override of the form key=value"),
        ("- 1\n- 2\n", [], "expected a mapping of keys to values, got list"),
        ("steps: [\n", [], "cannot be parsed"),
    ],
)
def test_config_errors_name_the_key(tmp_path, file_text, overrides, message):
    path = tmp_path / "c.yaml"
    path.write_text(file_text)
    with pytest.raises(train.ConfigError) as info:
        train.load_config(Config, path, overrides)
    assert message in str(info.value)


def test_missing_config_file_and_missing_key(tmp_path):
    with pytest.raises(train.ConfigError, match="does not exist"):
        train.load_config(Config, tmp_path / "nope.yaml")

    @dataclasses.dataclass(frozen=True)
    class Required:
        steps: int

    with pytest.raises(train.ConfigError, match="steps: missing"):
        train.load_config(Required)


# ---------------------------------------------------------------- checkpoints


def _state(hidden=4):
    params = {"w": jnp.arange(hidden * 2.0).reshape(hidden, 2), "b": jnp.ones(2)}
    return {"params": params, "opt_state": optax.adam(0.1).init(params)}


def test_checkpoint_round_trip_and_no_overwrite(tmp_path):
    ckpts = train.Checkpoints(tmp_path / "ckpt")
    state = _state()
    ckpts.save(7, state, {"step": 7})
    restored, meta = ckpts.restore(_state())
    assert meta == {"step": 7}
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(train.CheckpointError, match="already exists"):
        ckpts.save(7, _state(), {})


def test_incompatible_checkpoint_names_the_parameter(tmp_path):
    ckpts = train.Checkpoints(tmp_path / "ckpt")
    ckpts.save(1, _state(hidden=4))
    with pytest.raises(train.CheckpointError) as info:
        ckpts.restore(_state(hidden=5))
    message = str(info.value)
    assert "params.w: expected shape (5, 2) float32, the checkpoint has (4, 2) float32" in message
    with pytest.raises(train.CheckpointError, match=r"params\.extra: missing from the checkpoint"):
        target = _state()
        target["params"]["extra"] = jnp.zeros(3)
        ckpts.restore(target)


def _snapshot(directory: pathlib.Path):
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_corrupt_checkpoint_is_a_clear_error_and_left_alone(tmp_path):
    ckpts = train.Checkpoints(tmp_path / "ckpt")
    ckpts.save(1, _state())
    for path in (tmp_path / "ckpt" / "1").rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(b"\x00garbage" * 3)
    before = _snapshot(tmp_path)
    with pytest.raises(train.CheckpointError, match="cannot be read"):
        train.Checkpoints(tmp_path / "ckpt").restore(_state())
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------- the loop


def _toy_run(workdir, num_steps, callbacks=(), config=None, checkpoint_every=4):
    """A linear regression whose batches and noise are drawn from the step number."""
    optimizer = optax.adam(0.05)
    params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    key = jax.random.key(0)

    @jax.jit
    def step_fn(state, step):
        k = jax.random.fold_in(key, step)
        x = jax.random.normal(k, (16, 3))
        y = x @ jnp.array([1.0, -2.0, 0.5]) + 0.3
        noise = 0.01 * jax.random.normal(jax.random.fold_in(k, 1), (16,))

        def loss(p):
            return jnp.mean((x @ p["w"] + p["b"] - y - noise) ** 2)

        value, grads = jax.value_and_grad(loss)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"])
        return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}, {
            "loss": value
        }

    return train.fit(
        workdir,
        init_state={"params": params, "opt_state": optimizer.init(params)},
        train_step=step_fn,
        schedule=train.Schedule(
            steps=num_steps, log_every=2, eval_every=6, checkpoint_every=checkpoint_every
        ),
        eval_fn=lambda state: {"w0": float(state["params"]["w"][0])},
        config=config or Config(steps=num_steps),
        callbacks=callbacks,
    )


def _interrupt_at(stop_step):
    def callback(step, state, metrics):
        del state, metrics
        if step == stop_step:
            raise KeyboardInterrupt

    return callback


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    straight = _toy_run(tmp_path / "straight", 20)
    first = _toy_run(tmp_path / "resumed", 20, callbacks=[_interrupt_at(7)])
    assert first.interrupted and first.step == 7
    assert (tmp_path / "resumed" / "checkpoints" / "7").is_dir()  # saved on Ctrl-C
    second = _toy_run(tmp_path / "resumed", 20)
    assert second.resumed_from == 7 and not second.interrupted and second.step == 20
    for a, b in zip(jax.tree.leaves(second.state), jax.tree.leaves(straight.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(straight.state["params"]["w"][1]) < -0.5  # it did learn

    # The metrics tell one story: every step once, in order, the same losses. The
    # interval cut by the interruption is logged as two parts (steps 7 and 8).
    def losses(workdir):
        records = train.read_metrics(workdir / "metrics.jsonl", split="train")
        return {r["step"]: r["loss"] for r in records}, [r["step"] for r in records]

    (resumed, order), (straight, _) = losses(tmp_path / "resumed"), losses(tmp_path / "straight")
    assert order == [2, 4, 6, 7, 8, 10, 12, 14, 16, 18, 20]
    assert {k: v for k, v in resumed.items() if k not in (7, 8)} == {
        k: v for k, v in straight.items() if k != 8
    }
    assert (tmp_path / "resumed" / "curves.png").stat().st_size > 0
    assert json.loads((tmp_path / "resumed" / "config.json").read_text())["steps"] == 20


def test_resume_after_a_crash_drops_metrics_past_the_checkpoint(tmp_path):
    _toy_run(tmp_path, 8)  # checkpoints at 4 and 8
    with open(tmp_path / "metrics.jsonl", "a") as log:  # as if the process died after step 10
        for step, loss in ((9, 123.0), (10, 456.0)):
            log.write(json.dumps({"step": step, "split": "train", "loss": loss}) + "\n")
    result = _toy_run(tmp_path, 12)
    assert result.resumed_from == 8
    steps = [r["step"] for r in train.read_metrics(tmp_path / "metrics.jsonl", split="train")]
    assert steps == [2, 4, 6, 8, 10, 12]


def test_resume_with_another_config_is_refused_and_changes_nothing(tmp_path):
    _toy_run(tmp_path, 4, config=Config(steps=4, hidden=4))
    before = _snapshot(tmp_path)
    with pytest.raises(train.ConfigError) as info:
        _toy_run(tmp_path, 6, config=Config(steps=6, hidden=8))
    assert str(info.value).startswith("hidden: the checkpoint")
    assert _snapshot(tmp_path) == before
    # Changing only the number of steps continues the run.
    assert _toy_run(tmp_path, 6, config=Config(steps=6, hidden=4)).resumed_from == 4


def test_a_finished_run_is_left_as_it_is(tmp_path):
    _toy_run(tmp_path, 4)
    steps_before = sorted(os.listdir(tmp_path / "checkpoints"))
    result = _toy_run(tmp_path, 4)
    assert result.step == 4 and result.resumed_from == 4
    assert sorted(os.listdir(tmp_path / "checkpoints")) == steps_before


def test_fit_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every"):
        _toy_run(tmp_path, 4, checkpoint_every=0)


def test_user_errors_become_a_message_and_exit_status_2(capsys):
    with pytest.raises(SystemExit) as info, train.user_errors("prog"):
        train.load_config(Config, overrides=["setps=1"])
    assert info.value.code == 2
    assert "prog: ConfigError: setps: unknown key" in capsys.readouterr().err


def test_numbers_in_exponent_notation_are_floats(tmp_path):
    # PyYAML alone reads "1e-3" as a string (YAML 1.1); a learning rate is a number.
    @dataclasses.dataclass(frozen=True)
    class Rates:
        lr: float
        clip: float
        steps: int

    path = tmp_path / "c.yaml"
    path.write_text("lr: 3e-4\nclip: 1E9\nsteps: 10\n")
    config = train.load_config(Rates, path, ["clip=2e+1"])
    assert (config.lr, config.clip, config.steps) == (3e-4, 20.0, 10)
    assert train.load_config(Rates, path, ["lr=.5e-2", "steps=7"]).lr == 0.005
    with pytest.raises(train.ConfigError, match="lr: expected float, got str '1e'"):
        train.load_config(Rates, path, ["lr=1e"])
