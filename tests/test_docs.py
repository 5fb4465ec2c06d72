"""The documentation site: every code block runs, every public name has an API entry,
and the site builds strictly (a broken link, a missing reference or a docstring that
does not parse fails it)."""

import importlib
import re
import subprocess
import sys
import types

import jax
import pytest

from tests.helpers import DOCS, ROOT, docs_pages, page_blocks

#: The pages whose blocks run in the fast lane; the others (recipes that train for a
#: few seconds, pages that convert from PyTorch or check a cell) run in the full suite.
FAST_PAGES = {"guides/getting-started.md"}

#: The modules whose public names the API reference must hold.
PUBLIC_MODULES = (
    "jaxrnn",
    "jaxrnn.cells",
    "jaxrnn.rules",
    "jaxrnn.nnx",
    "jaxrnn.linen",
    "jaxrnn.interop",
    "jaxrnn.train",
    "jaxrnn.testing",
)

DIRECTIVE = re.compile(r"^\s*\.\. auto(?:function|class|data|exception)::\s+(\S+)", re.M)


def _page_id(path):
    return str(path.relative_to(DOCS))


@pytest.mark.parametrize(
    "page",
    [
        p if _page_id(p) in FAST_PAGES else pytest.param(p, marks=pytest.mark.slow)
        for p in docs_pages()
    ],
    ids=_page_id,
)
def test_every_code_block_of_the_docs_runs_as_written(page):
    # A user's code, which need not follow the suite's rank_promotion="raise"; the
    # library's code under it still does its own checks.
    namespace = {}
    with jax.numpy_rank_promotion("allow"):
        for block in page_blocks(page):
            exec(compile(block, str(page), "exec"), namespace)


def test_the_docs_have_blocks_on_every_page_a_newcomer_runs():
    pages = {_page_id(p) for p in docs_pages()}
    recipes = ("classify-padded", "tagging", "streaming", "from-torch")
    for page in ("guides/getting-started.md", *(f"recipes/{r}.md" for r in recipes)):
        assert page in pages, page


def _public(module_name):
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return {
        n: getattr(module, n)
        for n in names
        if not isinstance(getattr(module, n), types.ModuleType)
        and not n.startswith("_")
        and n != "annotations"
    }


def _documented():
    """The objects the API pages document, by the dotted names their directives give."""
    documented = {}
    for page in sorted((DOCS / "api").glob("*.rst")):
        module = None
        for line in page.read_text().splitlines():
            current = re.match(r"^\.\. currentmodule::\s+(\S+)", line)
            if current:
                module = current.group(1)
            target = DIRECTIVE.match(line)
            if target:
                name = target.group(1)
                full = name if name.startswith("jaxrnn") else f"{module}.{name}"
                documented[full] = page.name
    return documented


def _resolve(dotted):
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def test_the_api_reference_holds_every_public_name():
    documented = _documented()
    objects = {}
    for name in documented:
        try:
            objects[name] = _resolve(name)
        except (ImportError, AttributeError):
            pytest.fail(f"docs/api/{documented[name]}: {name} is not a public name")
    missing = []
    for module in PUBLIC_MODULES:
        for name, obj in _public(module).items():
            full = f"{module}.{name}"
            # A re-exported object counts once, under whichever public path documents it.
            by_identity = not isinstance(obj, (int, float, str)) and any(
                obj is o for o in objects.values()
            )
            if full not in documented and not by_identity:
                missing.append(full)
    assert not missing, f"public names missing from docs/api/*.rst: {missing}"


def test_the_api_coverage_check_catches_a_missing_name(monkeypatch):
    import jaxrnn.interop

    monkeypatch.setattr(jaxrnn.interop, "from_nowhere", lambda: None, raising=False)
    with pytest.raises(AssertionError, match=r"jaxrnn\.interop\.from_nowhere"):
        test_the_api_reference_holds_every_public_name()


@pytest.mark.slow
def test_the_site_builds_strictly_and_offline(tmp_path):
    pytest.importorskip("sphinx", reason="the docs extra (part of the test extra) builds the site")
    out = tmp_path / "html"
    command = [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-n", "-q"]
    run = subprocess.run(
        [*command, "-b", "html", "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    index = (out / "index.html").read_text()
    assert "guides/getting-started.html" in index
    # Every API page links each entry to its highlighted source lines.
    api = (out / "api" / "scan.html").read_text()
    assert "_modules/jaxrnn/_scan.html#scan" in api
    # Equations render offline: MathJax ships with the site, nothing from a CDN.
    cells = (out / "guides" / "cells.html").read_text()
    assert "mathjax" in cells.lower() and "cdn.jsdelivr" not in cells
    assert list((out / "_static").rglob("tex-chtml*.js"))
