"""The experiment verbs work from an installed wheel, outside the repository.

The wheel is built from a copy of the sources (no build files in the checkout),
installed with ``--no-deps`` into a fresh virtual environment whose
dependencies come from the project's own environment through a ``.pth`` line
(nothing is downloaded), and run from a temporary folder, where no
``configs/`` folder can be found by walking up from the package.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
from spacy.tokens import DocBin

from conftest import ROOT


def _run(command, cwd: Path, env=None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def wheel_python(tmp_path_factory) -> Path:
    """The python of a fresh venv with the built wheel installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "spacy_softprompt", source / "spacy_softprompt",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # no isolation: the build backend comes from this environment (setuptools builds wheels itself
    # since 70.1, so the `wheel` that pyproject.toml also lists need not be installed)
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check",
          "--outdir", tmp / "dist", source], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("spacy_softprompt-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    # installed before the project's site-packages are visible, so pip sees an empty environment
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel],
         cwd=tmp)
    target = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp)
                  .stdout.strip())
    # dependencies from the project's venv: a plain path line, so its editable-install hook is not run
    (target / "project_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.mark.slow
def test_package_comes_from_the_wheel_and_generates_the_committed_configs(wheel_python, tmp_path):
    where = _run([wheel_python, "-c", "import spacy_softprompt; print(spacy_softprompt.__file__)"],
                 cwd=tmp_path, env=_env()).stdout.strip()
    assert Path(where).is_relative_to(wheel_python.parents[1]) and not Path(where).is_relative_to(ROOT)
    _run([wheel_python, "-m", "spacy_softprompt", "init-config", "configs", "--preset", "all"], cwd=tmp_path, env=_env())
    for path in (ROOT / "configs").glob("*.cfg"):
        assert (tmp_path / "configs" / path.name).read_text() == path.read_text(), path.name


@pytest.mark.slow
def test_bench_quick_runs_from_the_wheel_outside_the_repository(wheel_python, tmp_path, toy_docs, tiny_bert):
    for split in ("train", "dev", "test"):
        DocBin(store_user_data=True, docs=toy_docs).to_disk(tmp_path / f"{split}.spacy")
    _run([wheel_python, "-m", "spacy_softprompt", "bench", "--quick", "--train", "train.spacy", "--dev", "dev.spacy",
          "--test", "test.spacy", "--output", "report/bench.md", "--runs", "runs", "--backbone", tiny_bert,
          "--prompt-layer", "1", "--only", "soft_prompt_frozen"], cwd=tmp_path, env=_env())
    report = json.loads((tmp_path / "report" / "bench.json").read_text())
    assert [row["run"] for row in report["systems"]] == ["soft_prompt_frozen"]
    assert all(row["train_seconds"] > 0 and row["words_per_second"] > 0 for row in report["systems"])
    assert "quick form: figures mean nothing" in (tmp_path / "report" / "bench.md").read_text()
    assert (tmp_path / "runs" / "soft_prompt_frozen" / "model-best" / "softprompt_ie").is_dir()
