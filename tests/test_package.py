"""The package surface, the README and the main job."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_import_pulls_in_no_flax_optax_or_torch():
    code = (
        "import sys, jaxrnn\n"
        "jaxrnn.interop.from_torch, jaxrnn.interop.to_torch\n"
        "heavy = sorted(m for m in ('flax', 'optax', 'torch') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize(
    "block", re.findall(r"```python\n(.*?)```", README, re.S), ids=lambda b: b.splitlines()[0]
)
def test_readme_examples_run_as_written(block):
    import jax

    # A user's code (the README's own cell), which need not follow the suite's
    # rank_promotion="raise"; the library's code under it still does its own checks.
    with jax.numpy_rank_promotion("allow"):
        exec(compile(block, "README.md", "exec"), {})


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    assert len(commands) == 2, commands
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_quickstart_loss_falls(capsys):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import quickstart
    finally:
        sys.path.pop(0)
    final = quickstart.main(steps=100)
    first = float(re.search(r"step    1  mse ([0-9.]+)", capsys.readouterr().out).group(1))
    assert final < first / 10
