"""Sphinx configuration of pyrovae's documentation site.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).
The API pages import the installed package (``pyrovae.models``/``pyrovae.guides`` come from ``models/``
and ``guides/`` through the package-dir mapping of ``pyproject.toml``). The notebooks are rendered as
committed (``nb_execution_mode = "off"``); ``docs/notebooks`` is a link to the repository's ``notebooks/``.
"""

import os
from pathlib import Path

from sphinx.ext import napoleon

import pyrovae
from pyrovae.cli import _parser

os.environ.setdefault("MPLBACKEND", "Agg")

project = "pyrovae"
author = "pyrovae contributors"
release = pyrovae.__version__
version = release

extensions = [
    "myst_nb",  # Markdown pages (it includes myst-parser) and the notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # the "Args:"/"Returns:" sections of some docstrings (see setup() below)
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from the build itself: the math is typeset offline too
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**/.ipynb_checkpoints"]
templates_path = ["_templates"]

# --- Markdown and notebooks --------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3  # README sections linked as page.md#section
nb_execution_mode = "off"  # notebooks are shown as committed; CI runs them in smoke mode separately

# --- API reference -----------------------------------------------------------------------------
autosummary_generate = True
autosummary_ignore_module_all = False  # a package's public names are its __all__
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_numpy_docstring = False
# A class one package re-exports from another is documented once, on its home package's page (autodoc
# gives both copies the class's canonical name, a duplicate object description). The module template reads this.
autosummary_context = {"documented_elsewhere": {"pyrovae.infer": ["BernoulliView"]}}  # home: pyrovae.distributions

# --- HTML --------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"pyrovae {release}"
html_static_path = []


def _write_cli_help(app):
    """Write ``pyrovae --help`` and ``pyrovae <command> --help`` for the CLI page to include."""
    parser = _parser(["train"])
    out = Path(app.srcdir) / "_generated"
    out.mkdir(exist_ok=True)
    commands = parser._subparsers._group_actions[0].choices
    text = [parser.format_help()]
    for name, sub in commands.items():
        text.append(f"$ pyrovae {name} --help\n{sub.format_help()}")
    target = out / "cli-help.txt"
    content = "\n".join(text)
    if not target.exists() or target.read_text() != content:  # unchanged text keeps the build incremental
        target.write_text(content)


def _napoleon_except_data(app, what, name, obj, options, lines):
    """Napoleon's Google-style sections, but not on data and attributes.

    pyrovae's ``#:`` comments often open with a citation or a label and a colon ("Burda et al. (2016,
    §5.2): a unit is active when ..."); napoleon reads such a first line as ``type: description`` and
    shows the citation as the value's type. Those docstrings have no sections, so they go through as written.
    """
    if what not in ("data", "attribute"):
        napoleon._process_docstring(app, what, name, obj, options, lines)


def setup(app):
    app.connect("builder-inited", _write_cli_help)
    for listener in list(app.events.listeners["autodoc-process-docstring"]):
        if listener.handler is napoleon._process_docstring:
            app.disconnect(listener.id)
    app.connect("autodoc-process-docstring", _napoleon_except_data)
