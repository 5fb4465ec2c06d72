"""jaxrnn.train under faults: damaged files, a second run, nonsense values, a full disk,
and a kill at every point of a step. Each refusal is one line, exit status 2, and
leaves every saved file as it was; each resumption ends where an uninterrupted run does.
"""

import builtins
import dataclasses
import errno
import inspect
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import typing
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from rich.console import Console

from jaxrnn import train

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import adding  # noqa: E402
import char_lm  # noqa: E402
import classify  # noqa: E402
import forecast  # noqa: E402

EXAMPLES = {"char_lm": char_lm, "adding": adding, "classify": classify, "forecast": forecast}

# A failed restore abandons Orbax's other reads; outside pytest jaxrnn.train drops their
# errors, but pytest reports them (in whichever test is running when they are collected).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

# ---------------------------------------------------------------- a toy run


@dataclasses.dataclass(frozen=True)
class Toy:
    steps: Annotated[int, train.Range(ge=1)] = 12
    log_every: Annotated[int, train.Range(ge=1)] = 2
    eval_every: Annotated[int, train.Range(ge=1)] = 4
    checkpoint_every: Annotated[int, train.Range(ge=1)] = 4
    lr: Annotated[float, train.Range(gt=0)] = 0.05


_TARGET = jnp.linspace(-1.0, 1.0, 1024)  # large enough to be stored out of line


@jax.jit
def _toy_step(state, step):
    """Linear regression on a batch drawn from the step number: exactly resumable."""
    x = jax.random.normal(jax.random.fold_in(jax.random.key(0), step), (16, 1024))
    y = x @ _TARGET

    def loss(p):
        return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    value, grads = jax.value_and_grad(loss)(state["params"])
    updates, opt_state = optax.adam(0.05).update(grads, state["opt_state"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt_state": opt_state}, {"loss": value, "w0": params["w"][0]}


@jax.jit
def _toy_eval(state):
    return {"err": jnp.mean((state["params"]["w"] - _TARGET) ** 2)}


def _toy_init():
    params = {"w": jnp.zeros(1024), "b": jnp.zeros(())}
    return {"params": params, "opt_state": optax.adam(0.05).init(params)}


def _toy(workdir, config=Toy(), *, callbacks=(), panels=None) -> train.RunResult:
    return train.fit(
        workdir,
        init_state=_toy_init(),
        train_step=_toy_step,
        schedule=train.Schedule.from_config(config),
        eval_fn=_toy_eval,
        config=config,
        callbacks=callbacks,
        report=train.Report(title="toy", panels=panels, console=Console(file=io.StringIO())),
    )


def _toy_main(argv) -> int:
    return train.run_main(
        Toy, lambda config, workdir: _toy(workdir, config), argv, name="toy", config=None
    )


def _records(workdir):
    """metrics.jsonl without the throughput, which depends on the clock."""
    records = train.read_metrics(pathlib.Path(workdir) / "metrics.jsonl")
    return [{k: v for k, v in r.items() if k != "items_per_s"} for r in records]


def _snapshot(directory: pathlib.Path):
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _same_tree(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _data_file(checkpoint: pathlib.Path) -> pathlib.Path:
    """The largest file of array bytes in a checkpoint (OCDBT data, not its indices)."""
    files = [p for p in (checkpoint / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    files = [p for p in files if "ocdbt.process_" in str(p)]
    return max(files, key=lambda p: p.stat().st_size)


def _flip(path: pathlib.Path, fraction: float, count: int = 8):
    data = bytearray(path.read_bytes())
    start = int(len(data) * fraction)
    data[start : start + count] = bytes(b ^ 0xFF for b in data[start : start + count])
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The toy run without interruption: its records and final state."""
    workdir = tmp_path_factory.mktemp("straight")
    result = _toy(workdir)
    return _records(workdir), result.state


@pytest.fixture(scope="module")
def toy_at_8(tmp_path_factory):
    """A toy run stopped after 8 steps: checkpoints 4 and 8."""
    workdir = tmp_path_factory.mktemp("toy8")
    _toy(workdir, Toy(steps=8))
    return workdir


def _copy(source, tmp_path) -> pathlib.Path:
    target = tmp_path / "run"
    shutil.copytree(source, target)
    return target


# ---------------------------------------------------------------- A1: a bit flip


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_a_bit_flip_in_the_newest_checkpoint_is_refused_and_nothing_is_deleted(
    toy_at_8, tmp_path, fraction
):
    workdir = _copy(toy_at_8, tmp_path)
    _flip(_data_file(workdir / "checkpoints" / "8"), fraction)
    before = _snapshot(workdir)
    with pytest.raises(train.CheckpointError) as info:
        _toy(workdir, Toy(steps=12))
    message = str(info.value)
    # Where the flipped bytes land decides which check catches them: the array's digest,
    # or the reader itself (a compressed chunk that no longer decodes).
    where = repr(str(workdir / "checkpoints" / "8"))
    digest = message.startswith(f"checkpoint {where} is damaged") and "sha256" in message
    assert digest or message.startswith(f"checkpoint {where} cannot be read"), message
    assert "step 4" in message and "\n" not in message
    assert _snapshot(workdir) == before  # nothing trained, nothing deleted


def test_retention_counts_only_verified_checkpoints(tmp_path):
    state = _toy_init()
    with train.Checkpoints(tmp_path, max_to_keep=2) as first:
        for step in (1, 2, 3):
            first.save(step, state)
        assert first.all_steps() == [2, 3]  # its own saves are verified
    # A new process has verified nothing: 2 and 3 stay until two new ones are verified.
    with train.Checkpoints(tmp_path, max_to_keep=2) as second:
        second.save(4, state)
        assert second.all_steps() == [2, 3, 4]
        second.save(5, state)
        assert second.all_steps() == [4, 5]
    # A checkpoint restored and verified counts too.
    with train.Checkpoints(tmp_path, max_to_keep=2) as third:
        third.restore(_toy_init())
        third.save(6, state)
        assert third.all_steps() == [5, 6]


# ---------------------------------------------------------------- A2: one run per directory

HOLDER = """
import dataclasses, sys, time
from jaxrnn import train

@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 1

def hold(config, workdir):
    print("holding", flush=True)
    time.sleep(300)

sys.exit(train.run_main(Config, hold, sys.argv[1:], name="holder", config=None))
"""


def test_a_second_run_is_refused_while_another_process_holds_the_workdir(tmp_path, capsys):
    workdir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        before = _snapshot(workdir)
        with pytest.raises(train.WorkdirError) as info:
            _toy(workdir)
        expected = f"workdir: {str(workdir.absolute())!r} is in use by another run (process "
        assert str(info.value).startswith(f"{expected}{holder.pid})")
        with pytest.raises(SystemExit) as exit_info:
            char_lm.main(["--workdir", str(workdir), "steps=2"])
        assert exit_info.value.code == 2
        assert f"is in use by another run (process {holder.pid})" in _one_line(
            capsys.readouterr().err
        )
        assert _snapshot(workdir) == before
    finally:
        holder.kill()  # SIGKILL: the operating system releases the lock
        holder.wait()
    assert _toy(workdir, Toy(steps=2, checkpoint_every=2)).step == 2


# ---------------------------------------------------------------- A3, A4: nonsense values

NONSENSE = [
    ("char_lm", "temperature=-1", "temperature: expected a float >= 0, got -1.0"),
    ("char_lm", "sample_length=-1", "sample_length: expected an int >= 0, got -1"),
    ("char_lm", "lr=-1", "lr: expected a float > 0, got -1.0"),
    ("char_lm", "lr=.nan", "lr: expected a float > 0, got nan"),
    ("char_lm", "clip_norm=-1", "clip_norm: expected a float > 0, got -1.0"),
    ("char_lm", "clip_norm=.inf", "clip_norm: expected a float > 0, got inf"),
    ("char_lm", "eval_every=-3", "eval_every: expected an int >= 1, got -3"),
    ("char_lm", "log_every=0", "log_every: expected an int >= 1, got 0"),
    ("char_lm", "checkpoint_every=0", "checkpoint_every: expected an int >= 1, got 0"),
    ("char_lm", "hidden_size=0", "hidden_size: expected an int >= 1, got 0"),
    ("char_lm", "hidden_size=true", "hidden_size: expected int, got bool True"),
    ("char_lm", "dropout=1.0", "dropout: expected a float >= 0 and < 1, got 1.0"),
    ("char_lm", "seq_len=0", "seq_len: expected an int >= 1, got 0"),
    ("char_lm", "batch_size=0", "batch_size: expected an int >= 1, got 0"),
    ("char_lm", "embed_size=0", "embed_size: expected an int >= 1, got 0"),
    ("char_lm", "num_layers=0", "num_layers: expected an int >= 1, got 0"),
    ("char_lm", "steps=-1", "steps: expected an int >= 1, got -1"),
    ("char_lm", "val_fraction=1", "val_fraction: expected a float > 0 and < 1, got 1.0"),
    ("char_lm", "seed=-1", "seed: expected an int >= 0 and < 4294967296, got -1"),
    ("adding", "batch_size=0", "batch_size: expected an int >= 1, got 0"),
    ("adding", "eval_size=0", "eval_size: expected an int >= 1, got 0"),
    ("adding", "seq_len=1", "seq_len: expected an int >= 2, got 1"),
    ("adding", "hidden_size=false", "hidden_size: expected int, got bool False"),
    ("classify", "val_fraction=0.5", "val_fraction: expected a float > 0 and < 0.5, got 0.5"),
    ("classify", "test_fraction=0", "test_fraction: expected a float > 0 and < 0.5, got 0.0"),
    ("classify", "dropout=-0.1", "dropout: expected a float >= 0 and < 1, got -0.1"),
    ("classify", "batch_size=0", "batch_size: expected an int >= 1, got 0"),
    ("forecast", "context=0", "context: expected an int >= 1, got 0"),
    ("forecast", "test_size=0", "test_size: expected an int >= 1, got 0"),
    ("forecast", "val_size=0", "val_size: expected an int >= 1, got 0"),
    ("forecast", "series=wind", "series: expected one of 'sunspots', 'co2', got str 'wind'"),
    ("char_lm", "devices=0", "devices: expected an int >= 1, got 0"),
    ("adding", "devices=2.5", "devices: expected int or null, got float 2.5"),
    ("classify", "devices=all", "devices: expected int or null, got str 'all'"),
    ("forecast", "devices=true", "devices: expected int or null, got bool True"),
]


@pytest.mark.parametrize("name, override, message", NONSENSE, ids=[n[1] for n in NONSENSE])
def test_nonsense_values_are_refused_before_anything_is_written(
    tmp_path, capsys, name, override, message
):
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        EXAMPLES[name].main(["--workdir", str(workdir), override])
    assert info.value.code == 2
    assert _one_line(capsys.readouterr().err) == f"{name}: ConfigError: {message}"
    assert not workdir.exists()


def test_every_numeric_key_of_every_example_declares_its_range():
    for name, module in EXAMPLES.items():
        hints = typing.get_type_hints(module.Config, include_extras=True)
        for field in dataclasses.fields(module.Config):
            hint = hints[field.name]
            if type(None) in typing.get_args(hint):  # an optional key: its other choice
                (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
            base, *extras = (
                typing.get_args(hint) if typing.get_origin(hint) is Annotated else (hint,)
            )
            if base in (int, float):
                assert any(isinstance(m, train.Range) for m in extras), f"{name}.{field.name}"
            else:  # only choices, strings and mappings may go without a range
                assert typing.get_origin(base) is typing.Literal or base in (str, dict), (
                    f"{name}.{field.name}: {hint}"
                )


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("classify", ["val_fraction=0.0001"], "val_fraction: expected at least 1/1797"),
        ("forecast", ["test_size=290"], "test_size: expected at most 197 with context=24"),
        ("forecast", ["context=1", "test_size=300", "val_size=5"], "test_size: expected at most"),
        ("char_lm", ["seq_len=400000"], "characters; at least"),
    ],
)
def test_values_that_do_not_fit_the_data_are_refused_before_training(
    tmp_path, capsys, name, overrides, message
):
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        EXAMPLES[name].main(["--workdir", str(workdir), *overrides])
    assert info.value.code == 2 and message in _one_line(capsys.readouterr().err)
    assert os.listdir(workdir) == [".lock"] and (workdir / ".lock").read_text() == ""


# ---------------------------------------------------------------- A5: unusable work directories


@pytest.mark.parametrize(
    "layout, message",
    [
        ("workdir is a file", "workdir: '{w}' is a file; expected a directory"),
        ("workdir under a file", "workdir: cannot create the directory '{w}'"),
        ("checkpoints is a file", "checkpoint directory '{w}/checkpoints' is a file"),
        ("metrics.jsonl is a directory", "'{w}/metrics.jsonl' cannot be read (Is a directory)"),
    ],
)
def test_an_unusable_workdir_is_a_one_line_error(tmp_path, capsys, layout, message):
    if layout == "workdir is a file":
        workdir = tmp_path / "run"
        workdir.write_text("a file")
    elif layout == "workdir under a file":
        (tmp_path / "file").write_text("a file")
        workdir = tmp_path / "file" / "run"
    else:
        workdir = tmp_path / "run"
        workdir.mkdir()
        if layout == "checkpoints is a file":
            (workdir / "checkpoints").write_text("a file")
        else:
            (workdir / "metrics.jsonl").mkdir()
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as info:
        _toy_main(["--workdir", str(workdir)])
    assert info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("toy: ") and message.format(w=workdir.absolute()) in line, line
    assert {k: v for k, v in _snapshot(tmp_path).items() if not k.endswith(".lock")} == before


# ---------------------------------------------------------------- A5: a full disk


def _full_disk_in_metrics(monkeypatch, at_step, split):
    """From now on, appending the record of ``(at_step, split)`` writes half of it and fails
    with ENOSPC, as a full disk would."""
    real_open = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if str(file).endswith("metrics.jsonl") and "a" in mode:
            real_write = handle.write

            def write(text):
                record = json.loads(text)
                if (record["step"], record["split"]) == (at_step, split):
                    real_write(text[: len(text) // 2])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real_write(text)

            handle.write = write
        return handle

    monkeypatch.setattr(builtins, "open", fake_open)


@pytest.mark.parametrize("writer", ["metrics.jsonl", "checkpoint", "curves.png"])
@pytest.mark.slow
def test_a_full_disk_is_a_one_line_error_and_the_resumed_run_is_exact(
    tmp_path, capsys, monkeypatch, straight, writer
):
    if writer == "metrics.jsonl":
        _full_disk_in_metrics(monkeypatch, 8, "eval")
    elif writer == "checkpoint":
        real_save = ocp.CheckpointManager.save

        def save(self, step, *args, **kwargs):
            if step == 8:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_save(self, step, *args, **kwargs)

        monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    else:
        import matplotlib.figure

        def savefig(self, path, *args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    workdir = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        _toy_main(["--workdir", str(workdir)])
    assert info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert "No space left on device" in line and "intact" in line, line
    monkeypatch.undo()
    assert _toy_main(["--workdir", str(workdir)]) == 0
    records, state = straight
    assert _records(workdir) == records
    with train.Checkpoints(workdir / "checkpoints", read_only=True) as checkpoints:
        _same_tree(checkpoints.restore(_toy_init())[0], state)


# ---------------------------------------------------------------- A5: damaged run files

TINY_LM = [
    "embed_size=8",
    "hidden_size=16",
    "seq_len=12",
    "batch_size=4",
    "eval_every=4",
    "log_every=2",
    "checkpoint_every=4",
    "sample_length=20",
]


@pytest.fixture(scope="module")
def trained_lm(tmp_path_factory):
    """A char LM trained for 8 steps on a small text: checkpoints 4 and 8."""
    root = tmp_path_factory.mktemp("lm")
    text = root / "text.txt"
    text.write_text("the cat sat on the mat. " * 40)
    argv = ["--workdir", str(root / "run"), *TINY_LM, f"text_path={text}", "steps=8"]
    assert char_lm.main(argv) == 0
    return root


def _damage(workdir: pathlib.Path, kind: str):
    newest = workdir / "checkpoints" / "8"
    if kind == "bit flip":
        _flip(_data_file(newest), 0.5)
    elif kind == "truncated":
        path = _data_file(newest)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "meta not JSON":
        (newest / "meta" / "metadata").write_bytes(b'{"config": {"cell": "ls')
    elif kind == "meta altered":
        meta = json.loads((newest / "meta" / "metadata").read_text())
        meta["chars"][0] = "#"  # valid JSON, another vocabulary
        (newest / "meta" / "metadata").write_text(json.dumps(meta))
    elif kind == "metrics line":
        lines = (workdir / "metrics.jsonl").read_text().splitlines(keepends=True)
        lines[1] = '{"step": 4, "split": "train", "loss": 2.\x00}\n'
        (workdir / "metrics.jsonl").write_text("".join(lines))


@pytest.mark.parametrize(
    "kind, message",
    [
        ("bit flip", "checkpoints/8' is damaged: the sha256 of "),
        ("truncated", "checkpoints/8' cannot be read ("),
        ("meta not JSON", "checkpoints/8' cannot be read ("),
        ("meta altered", "checkpoints/8' is damaged: the sha256 of meta"),
        ("metrics line", "metrics.jsonl' line 2 is damaged (not JSON)"),
    ],
)
@pytest.mark.slow
def test_damaged_run_files_are_one_line_errors_and_left_as_they_are(
    trained_lm, tmp_path, capsys, kind, message
):
    workdir = _copy(trained_lm / "run", tmp_path)
    _damage(workdir, kind)
    before = _snapshot(workdir)
    argv = ["--workdir", str(workdir), *TINY_LM, f"text_path={trained_lm / 'text.txt'}"]
    with pytest.raises(SystemExit) as info:
        char_lm.main([*argv, "steps=12"])
    assert info.value.code == 2
    assert message in _one_line(capsys.readouterr().err)
    if kind != "metrics line":  # sampling reads only the checkpoint
        with pytest.raises(SystemExit) as info:
            char_lm.main(["sample", "--workdir", str(workdir), "--length", "5"])
        assert info.value.code == 2
        assert message in _one_line(capsys.readouterr().err)
    assert _snapshot(workdir) == before


@pytest.mark.slow
def test_sampling_from_a_damaged_checkpoint_prints_one_line(trained_lm, tmp_path):
    workdir = _copy(trained_lm / "run", tmp_path)
    _damage(workdir, "truncated")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "char_lm.py"),
            "sample",
            "--workdir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert line.startswith("char_lm: CheckpointError: checkpoint") and "cannot be read" in line


# ---------------------------------------------------------------- A6: the text, not its path


@pytest.mark.slow
def test_the_same_text_at_another_path_resumes(trained_lm, tmp_path):
    workdir = _copy(trained_lm / "run", tmp_path)
    moved = tmp_path / "elsewhere.txt"
    shutil.copy(trained_lm / "text.txt", moved)
    config = train.load_config(
        char_lm.Config, char_lm.CONFIG, [*TINY_LM, f"text_path={moved}", "steps=10"]
    )
    result = char_lm.train_and_evaluate(config, workdir)
    assert result.resumed_from == 8 and result.step == 10


# ---------------------------------------------------------------- A7: a kill at any point


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in fit catches it, so nothing is saved or recorded."""


def _die_after(step):
    def callback(at, state, metrics):
        del state, metrics
        if at == step:
            raise _Killed

    return callback


KILL_POINTS = [
    "after the train step",
    "mid train record",
    "after the train record",
    "mid eval record",
    "after the eval record",
    "mid save",
    "after the save",
]


def _kill_at(point, step, monkeypatch):
    """Arranges for the run to die at ``point`` of step ``step``; returns callbacks."""
    if point == "after the train step":
        return [_die_after(step)]
    if "record" in point:
        split = "train" if "train" in point else "eval"
        real_open = builtins.open

        def fake_open(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            if str(file).endswith("metrics.jsonl") and "a" in mode:
                real_write = handle.write

                def write(text):
                    record = json.loads(text)
                    if (record["step"], record["split"]) != (step, split):
                        return real_write(text)
                    real_write(text[: len(text) // 2] if point.startswith("mid") else text)
                    handle.flush()
                    raise _Killed

                handle.write = write
            return handle

        monkeypatch.setattr(builtins, "open", fake_open)
        return []
    real_save = ocp.CheckpointManager.save

    def save(self, at, *args, **kwargs):
        if at != step:
            return real_save(self, at, *args, **kwargs)
        real_save(self, at, *args, **kwargs)
        if point == "mid save":  # written but not yet renamed into place
            final = pathlib.Path(self.directory) / str(at)
            final.rename(final.with_name(f"{at}.orbax-checkpoint-tmp-1"))
        raise _Killed

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    return []


@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.slow
def test_a_kill_at_any_point_of_a_step_resumes_to_the_same_records(
    tmp_path, monkeypatch, straight, point
):
    """Step 8 logs, evaluates and saves: a kill anywhere in it loses no record."""
    callbacks = _kill_at(point, 8, monkeypatch)
    with pytest.raises(_Killed):
        _toy(tmp_path, callbacks=callbacks)
    monkeypatch.undo()
    result = _toy(tmp_path)
    records, state = straight
    assert _records(tmp_path) == records
    _same_tree(result.state, state)


KILLABLE = (
    "import sys; from tests import test_train_faults as t; sys.exit(t._toy_main(sys.argv[1:]))"
)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.slow
def test_a_real_process_killed_mid_run_resumes_to_the_same_records(tmp_path, signum):
    """A signal at whatever point the run has reached: often mid-save, with a checkpoint
    every 2 steps."""
    schedule = ["log_every=1", "eval_every=3", "checkpoint_every=2"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, "--workdir", str(killed), "steps=100000", *schedule],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while len(list((killed / "checkpoints").glob("[0-9]*"))) < 3:
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    proc.send_signal(signum)
    proc.wait(timeout=60)
    with train.Checkpoints(killed / "checkpoints", read_only=True) as checkpoints:
        steps = checkpoints.latest_step() + 4
    config = Toy(steps=steps, log_every=1, eval_every=3, checkpoint_every=2)
    resumed = _toy(killed, config)
    assert resumed.resumed_from == steps - 4
    straight = _toy(tmp_path / "straight", config)
    assert _records(killed) == _records(tmp_path / "straight")
    _same_tree(resumed.state, straight.state)


def test_records_are_cut_at_checkpoints_so_a_resume_logs_the_same_intervals(tmp_path):
    """log_every=3 with checkpoints every 4: the interval around a checkpoint is recorded in
    two parts both when the run stops there and when it does not."""
    config = Toy(steps=12, log_every=3, eval_every=6, checkpoint_every=4)
    straight = tmp_path / "straight"
    _toy(straight, config)
    resumed = tmp_path / "resumed"
    with pytest.raises(_Killed):
        _toy(resumed, config, callbacks=[_die_after(7)])
    _toy(resumed, config)
    train_steps = [r["step"] for r in _records(straight) if r["split"] == "train"]
    assert train_steps == [3, 4, 6, 8, 9, 12]
    assert _records(resumed) == _records(straight)


# ---------------------------------------------------------------- B: the public surface


def test_the_public_surface_is_small_and_each_name_is_documented():
    public = sorted(name for name in dir(train) if not name.startswith("_"))
    assert public == sorted(
        [
            "CheckpointError",
            "Checkpoints",
            "ConfigError",
            "DataError",
            "DataParallel",
            "Panel",
            "Range",
            "Report",
            "RunResult",
            "Schedule",
            "WorkdirError",
            "figure",
            "fit",
            "load_config",
            "read_metrics",
            "run_main",
            "save_figure",
            "user_errors",
        ]
    )
    for name in public:
        assert f":func:`{name}`" in train.__doc__ or f":class:`{name}`" in train.__doc__, name
    parameters = inspect.signature(train.fit).parameters
    assert len(parameters) <= 10 and "schedule" in parameters and "report" in parameters


def test_curves_png_draws_the_panels_an_example_declares(tmp_path, monkeypatch):
    """char_lm's panels: both bits-per-character curves on one axis with the unigram
    baseline as a line; nats are not plotted."""
    drawn = []
    monkeypatch.setattr("jaxrnn.train._plots.save_figure", lambda fig, path: drawn.append(fig))

    def step(state, at):
        loss = 3.0 / (1 + at)
        return state, {"loss": loss, "bpc": loss / np.log(2), "grad_norm": 1.0 + at}

    train.fit(
        tmp_path,
        init_state={"w": jnp.zeros(2)},
        train_step=step,
        schedule=train.Schedule(steps=6, log_every=2, eval_every=3, checkpoint_every=6),
        eval_fn=lambda state: {"val_bpc": 2.5, "unigram_bpc": 4.5},
        report=train.Report(panels=char_lm.PANELS, console=Console(file=io.StringIO())),
    )
    (fig,) = drawn
    bpc, grad = (ax for ax in fig.axes if ax.get_visible())
    assert bpc.get_title() == "bits per character"
    labels = [line.get_label() for line in bpc.get_lines()]
    assert labels == ["train/bpc", "eval/val_bpc", "unigram baseline (4.5)"]
    assert list(bpc.get_lines()[-1].get_ydata()) == [4.5, 4.5]
    assert [line.get_label() for line in grad.get_lines()] == ["train/grad_norm"]
    assert all("loss" not in line.get_label() for ax in fig.axes for line in ax.get_lines())
