"""Sphinx configuration of jaxrnn's documentation site.

Build it with ``python -m sphinx -W --keep-going -n -b html docs docs/_build/html``.
The build is strict (``-W -n``): a warning, a broken cross-reference or a docstring
that does not parse fails it. Nothing is fetched from the network: the theme's
assets ship with it and MathJax comes from the ``sphinx-mathjax-offline`` package.
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jaxrnn  # noqa: E402

project = "jaxrnn"
author = "The jaxrnn authors"
copyright = "The jaxrnn authors"
release = version = jaxrnn.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
    "sphinx_copybutton",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# Markdown pages: $...$ and $$...$$ for equations, ::: fences for notes.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# API pages: signatures as written, in source order, Google-style sections.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
add_module_names = False

# Strict mode (-n) reports every cross-reference that does not resolve. References
# into other projects' APIs cannot resolve offline (no intersphinx); these are the
# namespaces the docstrings and signatures name.
nitpick_ignore_regex = [
    ("py:.*", r"(jax|jaxlib|flax|optax|numpy|np|jnp|torch|typing|collections|orbax|xlstm)(\..*)?"),
    ("py:.*", r"(recurrentgemma|dataclasses|enum|pathlib|os|abc|functools|types)(\..*)?"),
    ("py:.*", r"(Any|Callable|Sequence|Mapping|Iterable|Iterator|NamedTuple|Literal)"),
    ("py:.*", r"(Array|ArrayLike|PRNGKey|PyTree|Step|Shape|DType|Key|Path|PathLike)"),
    ("py:.*", r"(int|float|bool|str|tuple|list|dict|object|type|None|bytes|callable)"),
    ("py:.*", r"(nnx|nn|linen|lax)\..*"),
    # Private bases and type variables of public classes and functions.
    ("py:.*", r"jaxrnn(\.\w+)*\._\w+(\..*)?"),
]

html_theme = "sphinx_book_theme"
html_title = f"jaxrnn {version}"
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
}
html_static_path = ["_static"]
html_css_files = ["custom.css"]
pygments_style = "friendly"
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True


def _resolve_alias(app, env, node, contnode):
    """Resolves a reference to a public name by another of its public paths.

    The docstrings name re-exported objects by whichever path reads best
    (``jaxrnn.LinearRecurrence`` is ``jaxrnn.rules.LinearRecurrence``; ``LSTMParams``
    inside ``jaxrnn.interop`` is ``jaxrnn.LSTMParams``); each is documented once.
    """
    import importlib

    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    candidates = [target]
    if "." not in target:
        candidates += [f"jaxrnn.{target}", f"jaxrnn.rules.{target}"]
    documented = env.get_domain("py").objects
    for name in candidates:
        module, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError):
            continue
        for other in documented:
            o_module, _, o_attr = other.rpartition(".")
            try:
                same = getattr(importlib.import_module(o_module), o_attr, None) is obj
            except (ImportError, ValueError):
                continue
            if same:
                domain = env.get_domain("py")
                return domain.resolve_xref(
                    env, node["refdoc"], app.builder, node["reftype"], other, node, contnode
                )
    return None


def setup(app):
    app.connect("missing-reference", _resolve_alias)
