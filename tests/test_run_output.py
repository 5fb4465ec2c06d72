"""What a run writes and prints: TensorBoard event files (the ``tensorboard`` extra),
profiler traces, progress lines, and the examples' help."""

import dataclasses
import pathlib
import shutil
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from jaxrnn import train

pytest.importorskip("tensorboardX", reason="the tensorboard extra (part of the test extra)")


def read_events(workdir):
    """Every event of the run's files, in order, as TensorBoard sees them: a ``START``
    session log at step ``s`` (a resumed run's ``purge_step``) hides the earlier events
    at ``s`` and later."""
    from tensorboardX.proto import event_pb2

    files = []
    for path in workdir.glob("events.out.tfevents.*"):
        data, at, events = path.read_bytes(), 0, []
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            events.append(event_pb2.Event.FromString(data[at + 12 : at + 12 + length]))
            at += 12 + length + 4
        files.append(events)
    # In the order the files were started (their names end in a per-process counter,
    # which does not sort as text past 9).
    seen = []
    for events in sorted(files, key=lambda events: events[0].wall_time if events else 0.0):
        for event in events:
            if event.HasField("session_log") and event.session_log.status == 1:  # START
                seen = [e for e in seen if e.step < event.step]
            seen.append(event)
    return seen


def scalars(events):
    return [
        (v.tag, e.step, v.simple_value)
        for e in events
        for v in e.summary.value
        if v.HasField("simple_value")
    ]


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 6
    log_every: int = 1
    eval_every: int = 2
    checkpoint_every: int = 2
    profile_steps: int = 0
    lr: float = 0.1
    name: str = "toy"
    options: dict = dataclasses.field(default_factory=lambda: {"a": 1})


def run(workdir, config):
    @jax.jit
    def train_step(state, step):
        w = state["w"] - config.lr * 2 * state["w"]
        return {"w": w}, {"loss": jnp.sum(w**2)}

    def evaluate(state, step):
        return {"norm": float(jnp.abs(state["w"]).sum()), "sample": f"text at step {step}\n  two"}

    return train.fit(
        workdir,
        init_state={"w": jnp.ones(3)},
        train_step=train_step,
        schedule=train.Schedule.from_config(config),
        eval_fn=evaluate,
        config=config,
    )


def test_a_run_writes_its_records_config_and_texts_and_a_resumed_run_no_duplicates(tmp_path):
    workdir = tmp_path / "run"
    run(workdir, Config(steps=4))
    shutil.rmtree(workdir / "checkpoints" / "4")  # as if it died after step 4's records
    run(workdir, Config(steps=6))  # resumes from step 2, records 3 and 4 again, then 5, 6
    events = read_events(workdir)
    got = scalars(events)
    keys = [(tag, step) for tag, step, _ in got]
    assert len(keys) == len(set(keys)), sorted(keys)  # each step once
    records = train.read_metrics(workdir / "metrics.jsonl")
    want = {
        (f"{r['split']}/{k}", r["step"]): v
        for r in records
        for k, v in r.items()
        if k not in ("step", "split")
    }
    assert {(t, s): v for t, s, v in got} == pytest.approx(want)
    assert {s for t, s in keys if t == "train/loss"} == {1, 2, 3, 4, 5, 6}
    texts = {
        (v.tag, e.step) for e in events for v in e.summary.value if v.tag.endswith("text_summary")
    }
    assert {s for t, s in texts if t.startswith("eval/sample")} == {2, 4, 6}
    assert ("config/text_summary", 0) in texts
    tags = {v.tag for e in events for v in e.summary.value}
    assert "_hparams_/experiment" in tags and "_hparams_/session_start_info" in tags


def test_without_the_extra_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if not installed
    run(tmp_path / "run", Config(steps=2))
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert len(train.read_metrics(tmp_path / "run" / "metrics.jsonl")) == 3


def test_only_the_primary_process_writes_events(tmp_path, monkeypatch):
    import jaxrnn.train._loop as loop

    monkeypatch.setattr(loop, "is_primary", lambda: False)
    run(tmp_path / "run", Config(steps=2, profile_steps=1))
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert not (tmp_path / "run" / "profile").exists()


def test_profile_steps_writes_a_trace(tmp_path):
    run(tmp_path / "run", Config(steps=4, profile_steps=2))
    traces = list((tmp_path / "run" / "profile").rglob("*.xplane.pb"))
    assert traces, list((tmp_path / "run").rglob("*"))
    assert list((tmp_path / "run" / "profile").rglob("*.trace.json.gz"))  # for Perfetto


def test_progress_lines_in_a_pipe_are_not_wrapped(tmp_path, capsys):
    @jax.jit
    def train_step(state, step):
        metrics = {"loss": state["x"], "a_rather_long_metric_name_for_a_narrow_pipe": state["x"]}
        return state, metrics

    train.fit(
        tmp_path / "run",
        init_state={"x": jnp.ones(())},
        train_step=train_step,
        schedule=train.Schedule(steps=2, log_every=1),
        report=train.Report(items_per_step=123456, item_name="characters"),
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    logged = [line for line in lines if line.startswith("step ")]
    assert len(logged) == 2 and all(len(line) > 80 for line in logged), lines
    assert all(line.endswith("on 1 device") for line in logged), lines


ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_char_lm_help_names_the_sample_command_and_its_options():
    def help_of(*args):
        command = [sys.executable, str(ROOT / "examples" / "char_lm.py"), *args, "--help"]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    assert "char_lm.py sample" in help_of()
    sample = help_of("sample")
    text = " ".join(sample.split())
    for option, meaning in (
        ("--workdir", "the training run's directory"),
        ("--prompt", "text to start from"),
        ("--length", "characters to generate"),
        ("--temperature", "softmax temperature"),
        ("--seed", "random seed"),
    ):
        assert option in text and meaning in text, (option, sample)


def test_two_writers_in_one_second_keep_separate_files(tmp_path):
    # The writer names its file by the second: a resumed run started within the same
    # second as the earlier one must not open (and empty) the earlier run's file.
    from jaxrnn.train._tensorboard import event_writer

    first = event_writer(tmp_path, first_step=0, config={"a": 1})
    first.scalars(1, "train", {"loss": 1.0})
    first.close()
    second = event_writer(tmp_path, first_step=1, config=None)
    second.scalars(2, "train", {"loss": 0.5})
    second.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    steps = {(v.tag, e.step) for e in read_events(tmp_path) for v in e.summary.value}
    assert {("train/loss", 1), ("train/loss", 2)} <= steps
