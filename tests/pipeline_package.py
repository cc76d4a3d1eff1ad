"""Test helper: make a saved pipeline loadable by package name, without pip.

The folder is laid out as ``spacy package`` lays out an installed pipeline
(``NAME/__init__.py`` with ``load()``, ``NAME/meta.json``, the data in
``NAME/NAME-VERSION/``) next to a ``NAME-VERSION.dist-info``, so that
``spacy.util.is_package`` (importlib.metadata) and ``spacy.load(NAME)`` find it
once ``site`` is on ``sys.path`` (in-process) or ``PYTHONPATH`` (a child
process). Nothing is installed into the shared environment.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

INIT_PY = '''from spacy.util import load_model_from_init_py


def load(**overrides):
    return load_model_from_init_py(__file__, **overrides)
'''


def install_pipeline_package(pipeline: Path, name: str, site: Path, version: str = "0.0.0") -> Path:
    """Lay ``pipeline`` out under ``site`` as the installed package ``name`` (``lang_name``)."""
    meta = json.loads((pipeline / "meta.json").read_text(encoding="utf8"))
    lang, _, short_name = name.partition("_")
    assert lang == meta["lang"] and short_name, f"package names are LANG_NAME, got {name!r}"
    meta.update(name=short_name, version=version)
    package = site / name
    data = package / f"{name}-{version}"
    shutil.copytree(pipeline, data)
    for where in (package, data):
        (where / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf8")
    (package / "__init__.py").write_text(INIT_PY, encoding="utf8")
    dist_info = site / f"{name}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf8")
    return package
