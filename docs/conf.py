"""Sphinx configuration of pyrovae's documentation site.

Build: ``sphinx-build -W -n --keep-going -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).
The API pages import the installed package (``pyrovae.models``/``pyrovae.guides`` come from ``models/``
and ``guides/`` through the package-dir mapping of ``pyproject.toml``). The notebooks are rendered as
committed (``nb_execution_mode = "off"``); ``docs/notebooks`` is a link to the repository's ``notebooks/``.
"""

import functools
import importlib
import inspect
import os
import re
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.ext import napoleon
from sphinx.pycode import ModuleAnalyzer

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

# --- Cross-references ---------------------------------------------------------------------------
# Every reference must resolve (``-n`` on the command line does the same): a broken one is a warning,
# and -W makes it an error. Intersphinx is not used: the inventories of Python, PyTorch and Pyro
# cannot be downloaded where this site is built (no internet), so references to those projects
# resolve nowhere and are listed below, each with its reason, instead of being linked.
nitpicky = True
nitpick_ignore_regex = [
    # PyTorch (torch.Tensor, torch.nn.Module, torch.device, ...): no inventory here.
    (r"py:.*", r"torch(\..*)?"),
    # Pyro (pyro.infer.ELBO, pyro.distributions.TorchDistribution, pyro.settings, ...): no inventory here.
    (r"py:.*", r"pyro\..*"),
    # The Python standard library (pathlib.Path, collections.abc.Callable, argparse, ...): no inventory here.
    (r"py:.*", r"(argparse|collections|dataclasses|difflib|os|pathlib)\..*"),
    # matplotlib (the figures pyrovae.plots returns), NumPy, SciPy: no inventory here.
    (r"py:.*", r"(matplotlib|numpy|scipy)\..*"),
]
nitpick_ignore = [
    # Third-party names as written in annotations under ``from __future__ import annotations``
    # (autodoc shows the string as written): torch's Tensor and nn.Module, pathlib's Path.
    ("py:class", "Tensor"),
    ("py:class", "nn.Module"),
    ("py:class", "Path"),
    # Docstrings inherited from PyTorch and Pyro, with their own short references: torch.nn.Module.forward's
    # (every model's and guide's ``forward``) names "Module"; Pyro's TorchDistributionMixin.expand names
    # "ExpandedDistribution".
    ("py:class", "Module"),
    ("py:class", "ExpandedDistribution"),
]

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
    """Napoleon's Google-style sections, but not on data, attributes and properties.

    pyrovae's ``#:`` comments and property docstrings often open with a citation or a label and a
    colon ("Burda et al. (2016, §5.2): a unit is active when ..."); napoleon reads such a first line
    as ``type: description`` and shows the citation as the value's type (a broken cross-reference
    under ``-n``). Those docstrings have no sections, so they go through as written.
    """
    if what not in ("data", "attribute", "property"):
        napoleon._process_docstring(app, what, name, obj, options, lines)


def _api_modules(srcdir: Path) -> list[str]:
    """The modules the pages list in their ``autosummary`` directives (one dotted name a line)."""
    names = []
    for page in sorted([*srcdir.glob("*.md"), *(srcdir / "api").glob("*.md")]):
        names += re.findall(r"^ {3}(pyrovae(?:\.\w+)*)\s*$", page.read_text(), flags=re.MULTILINE)
    return names


def _public_names(module) -> list[str]:
    """A module's public names as its API page shows them: its ``__all__``, else the classes and
    functions it defines (autodoc's choice for a module without ``__all__``)."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, value in vars(module).items()
            if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == module.__name__]


def _has_docstring(module, name: str) -> bool:
    value = getattr(module, name)
    if inspect.isclass(value) or inspect.isroutine(value) or inspect.ismodule(value):
        return bool(inspect.getdoc(value))
    # Data: the ``#:`` comment above its assignment in this module (a value's __doc__ is its type's).
    return ("", name) in ModuleAnalyzer.for_module(module.__name__).find_attr_docs()


def _undocumented_members(cls) -> list[str]:
    """The public methods and properties ``cls`` defines that have no docstring, inherited ones
    counting (autodoc shows an override with the docstring of the method it overrides)."""
    missing = []
    for name, value in vars(cls).items():
        function = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
        if not name.startswith("_") and inspect.isfunction(function) and not inspect.getdoc(getattr(cls, name)):
            missing.append(name)
    return missing


def undocumented_names(srcdir: Path) -> list[str]:
    """Every public name of the API reference without a docstring: the names of each module the
    API pages list (see :func:`_public_names`), and the methods and properties of its classes."""
    missing = []
    for module_name in _api_modules(srcdir):
        module = importlib.import_module(module_name)
        for name in _public_names(module):
            if not _has_docstring(module, name):
                missing.append(f"{module_name}.{name}")
            value = getattr(module, name)
            if inspect.isclass(value):
                missing += [f"{module_name}.{name}.{member}" for member in _undocumented_members(value)]
    return missing


@functools.cache
def _documented_names(srcdir: Path) -> dict[int, str]:
    """``id(object)`` -> the name the API reference documents it under, for its classes and
    functions and their methods (an object a module re-exports from another is documented once)."""
    elsewhere = autosummary_context["documented_elsewhere"]
    names = {}
    for module_name in _api_modules(srcdir):
        module = importlib.import_module(module_name)
        for name in _public_names(module):
            value = getattr(module, name)
            if name in elsewhere.get(module_name, ()) or not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            names.setdefault(id(value), f"{module_name}.{name}")
            for member, attribute in vars(value).items() if inspect.isclass(value) else ():
                if not member.startswith("_") and inspect.isfunction(attribute):
                    names.setdefault(id(attribute), f"{module_name}.{name}.{member}")
    return names


def _lookup(dotted: str):
    """The object named ``pyrovae.<module>.<attribute>...``, or None."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            value = getattr(value, attribute, None)
        return value
    return None


def _resolve_to_documented_name(app, env, node, contnode):
    """Resolve a reference to a pyrovae object written under another name than its page's: the
    module that defines it (``pyrovae.infer.log_weights.ParticleObjective``, as ``show-inheritance``
    writes a base class), a name imported into the module whose docstring refers to it, or a method
    a class inherits (``:meth:`hard``` in a subclass's docstring). When the object is one the API
    reference documents, the reference goes to its documented name; otherwise it stays broken."""
    if node.get("refdomain") != "py":
        return None
    target, module, cls = node["reftarget"], node.get("py:module"), node.get("py:class")
    candidates = [target] if target.startswith("pyrovae.") else []
    if module:
        candidates.insert(0, f"{module}.{target}")
        if cls:
            candidates.insert(0, f"{module}.{cls}.{target}")
    documented = _documented_names(Path(app.srcdir))
    for candidate in candidates:
        name = documented.get(id(_lookup(candidate)))
        if name is not None and name != target:
            return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"], name, node,
                                                     contnode)
    return None


def _check_docstrings(app):
    """Fail the build when a public name of the API reference has no docstring (autodoc would leave
    it out of its page without a word)."""
    if missing := undocumented_names(Path(app.srcdir)):
        raise ExtensionError(f"{len(missing)} public names have no docstring:\n  " + "\n  ".join(missing))


def setup(app):
    app.connect("builder-inited", _write_cli_help)
    app.connect("builder-inited", _check_docstrings)
    app.connect("missing-reference", _resolve_to_documented_name)
    for listener in list(app.events.listeners["autodoc-process-docstring"]):
        if listener.handler is napoleon._process_docstring:
            app.disconnect(listener.id)
    app.connect("autodoc-process-docstring", _napoleon_except_data)
