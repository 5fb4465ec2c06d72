"""The package surface, the README and the main job."""

import pathlib
import re
import subprocess
import sys

import pytest

from tests.helpers import readme_blocks

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
    "section",
    [s if s == "Quickstart" else pytest.param(s, marks=pytest.mark.slow) for s in readme_blocks()],
)
def test_readme_examples_run_as_written(section):
    import jax

    # A user's code (the README's own cell), which need not follow the suite's
    # rank_promotion="raise"; the library's code under it still does its own checks.
    namespace = {}
    with jax.numpy_rank_promotion("allow"):
        for block in readme_blocks()[section]:
            exec(compile(block, "README.md", "exec"), namespace)


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


def _imports(path: pathlib.Path) -> set[str]:
    """The ``jaxrnn`` modules a source file imports at its top level (not inside functions)."""
    import ast

    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxrnn"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("jaxrnn"))
    return found


def _module_graph() -> dict[str, set[str]]:
    package = ROOT / "jaxrnn"
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return {name: _imports(path) & set(modules) for name, path in modules.items()}


def test_the_layers_import_downwards_and_no_cell_imports_another():
    graph = _module_graph()
    cells = {m for m in graph if m.startswith("jaxrnn.cells.")}
    for cell in cells:
        assert not (graph[cell] & (cells - {cell})), f"{cell} imports another cell"
    # The core and the rules know no cell, and no face (NNX, Linen, interop, train).
    faces = ("jaxrnn.cells", "jaxrnn.nnx", "jaxrnn.linen", "jaxrnn.interop", "jaxrnn.train")
    for module, imported in graph.items():
        if module.startswith("jaxrnn.rules") or (
            module.startswith("jaxrnn._") and module != "jaxrnn._batch_major"
        ):
            above = {m for m in imported if m.startswith(faces)}
            assert not above, f"{module} imports {sorted(above)}"
    # No cycles, the package's __init__ files aside (they only re-export).
    edges = {m: {i for i in imported if i in graph} for m, imported in graph.items()}
    state = {}

    def visit(module, path):
        state[module] = "open"
        for other in edges[module]:
            if other.endswith(("jaxrnn", "__init__")) or other == "jaxrnn":
                continue
            if state.get(other) == "open":
                raise AssertionError(f"import cycle: {' -> '.join([*path, other])}")
            if other not in state:
                visit(other, [*path, other])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_from_torch_without_torch_names_the_extra():
    code = (
        "import sys; sys.modules['torch'] = None\n"  # as if PyTorch were not installed
        "import jaxrnn\n"
        "for convert in (jaxrnn.interop.from_torch, jaxrnn.interop.to_torch):\n"
        "    try:\n"
        "        convert(None)\n"
        "    except ImportError as error:\n"
        "        print(error)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True
    ).stdout.splitlines()
    assert out == [
        f'jaxrnn.interop.{name} needs PyTorch, which is not installed: pip install "jaxrnn[torch]"'
        for name in ("from_torch", "to_torch")
    ]


def test_the_package_metadata_is_in_one_place():
    import jaxrnn

    tomllib = pytest.importorskip("tomllib", reason="tomllib comes with Python 3.11")

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    meta = project["project"]
    assert meta["dynamic"] == ["version"] and "version" not in meta
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "jaxrnn.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", jaxrnn.__version__)
    assert meta["license"] == "Apache-2.0" and meta["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert meta["readme"] == "README.md" and meta["classifiers"] and meta["keywords"]
    extras = meta["optional-dependencies"]
    assert {"torch", "examples", "tensorboard", "docs", "test", "bench"} <= set(extras)
    assert extras["torch"] == ["torch>=2.1"]
    assert "torch==2.13.0" in extras["test"]  # the CPU build; never an unpinned torch in CI
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## Unreleased" in changelog and f"## {jaxrnn.__version__} " in changelog
    assert f"version: {jaxrnn.__version__}" in (ROOT / "CITATION.cff").read_text()


def test_the_sdist_manifest_holds_what_the_tests_read():
    manifest = (ROOT / "MANIFEST.in").read_text().split()
    for folder in ("examples", "configs", "benchmarks", "docs", "tests"):
        assert folder in manifest, folder


def test_the_readme_is_short_and_links_into_the_docs():
    lines = README.splitlines()
    assert len(lines) <= 250, len(lines)
    for target in re.findall(r"\]\(((?:docs/|CHANGELOG|CITATION|LICENSE)[^)#]*)", README):
        assert (ROOT / target).exists(), target
