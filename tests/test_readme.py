"""The README's code blocks run as written, so the README cannot go stale.

Every ```python, ```bash and ```sh block of README.md runs, each in a fresh
copy of a workspace that stands in for a clone after ``make install assets``
(``configs/``, ``assets/`` from ``../shared/data``, small ``corpus/*.spacy``
files, a brat folder ``my_corpus/``), with ``.venv/bin`` first on ``PATH``.
A block is skipped only when a marker comment sits on a line right before its
fence (blank lines may come between; several markers may be stacked):

``<!-- needs: gpu -->``
    runs only where torch sees a CUDA device.
``<!-- needs: internet -->``
    runs only with ``SOFTPROMPT_README_INTERNET=1``: tests never download
    (``pip install .`` resolves this project's dependencies on PyPI, and
    ``spacy package --build wheel`` builds in an isolated environment that
    downloads setuptools). tests/test_wheel.py installs the project's wheel
    offline.
``<!-- needs: long-run -->``
    runs only with ``SOFTPROMPT_README_LONG=1``: ``make demo`` (10 minutes of
    training), ``make test`` (this suite: it would run itself) and the
    prompt-length and few-shot sweeps (10 minutes each). ``.ci/run`` runs
    ``make test``; the demo is run by hand before its output is regenerated.
``<!-- needs: trained-pipeline -->``
    runs: a pipeline trained in this session (tiny random BERT, a few toy
    documents) is at ``training/lora_frozen/model-best`` and is
    importable as the installed package ``en_softprompt_ade``.

Training commands run as written; spaCy's ``SPACY_CONFIG_OVERRIDES``
environment variable (it wins over the command line) shrinks them to two steps
on the tiny backbone. Pasted outputs carry ``<!-- output: NAME -->``:
``docs/readme_outputs.py NAME`` regenerates them; the code that prints them
runs here, and the cheap one (the SDoH conversion summary) is compared.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import spacy
from spacy.tokens import DocBin

from conftest import RELATIONS, ROOT, SHARED_DATA, TEXTS, annotate, fit_pipeline, require_shared
from pipeline_package import install_pipeline_package

RUNNABLE = {"python", "bash", "sh"}
GATES = {
    "gpu": lambda: _cuda_available(),
    "internet": lambda: os.environ.get("SOFTPROMPT_README_INTERNET") == "1",
    "long-run": lambda: os.environ.get("SOFTPROMPT_README_LONG") == "1",
    "trained-pipeline": lambda: True,  # provided by the workspace
}
PACKAGE_NAME = "en_softprompt_ade"
PIPELINE = "training/lora_frozen/model-best"


def _load_outputs_script():
    spec = importlib.util.spec_from_file_location("readme_outputs", ROOT / "docs" / "readme_outputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


readme_outputs = _load_outputs_script()
BLOCKS = readme_outputs.read_blocks((ROOT / "README.md").read_text(encoding="utf8"))
CODE_BLOCKS = [b for b in BLOCKS if b.language in RUNNABLE]


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _block_id(block) -> str:
    first = next((line for line in block.body if line.strip()), "")
    return f"line{block.first_line}-{block.language}-{first[:30]}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_bert) -> Path:
    """What the README assumes is there: a clone after `make install assets`, plus a trained pipeline."""
    require_shared(SHARED_DATA)
    root = tmp_path_factory.mktemp("readme") / "clone"
    (root / "assets").mkdir(parents=True)
    for corpus in ("ade-corpus-v2", "sdoh-mtsamples", "maccrobat"):
        (root / "assets" / corpus).symlink_to(SHARED_DATA / corpus)
    (root / "configs").symlink_to(ROOT / "configs")
    (root / "project.yml").symlink_to(ROOT / "project.yml")
    blank = spacy.blank("en")
    docs = [annotate(blank, t, m, RELATIONS.get(i, ())) for i, (t, m) in enumerate(TEXTS)]
    for split in ("train", "dev", "test"):
        (root / "corpus" / "ade").mkdir(parents=True, exist_ok=True)
        DocBin(store_user_data=True, docs=docs).to_disk(root / "corpus" / "ade" / f"{split}.spacy")
    nlp = fit_pipeline(docs, 60, model={"backbone": tiny_bert, "strategy": "none", "freeze_backbone": False})
    (root / PIPELINE).parent.mkdir(parents=True)
    nlp.to_disk(root / PIPELINE)
    from spacy_softprompt.cli import main

    for split in ("train", "dev", "test"):  # "your own brat data", n2c2 2018 style: Arg2 of each R is the Drug
        assert main(["export-brat", str(root / "corpus/ade/test.spacy"), str(root / "my_corpus" / split),
                     "--tail-first"]) == 0
    install_pipeline_package(root / PIPELINE, PACKAGE_NAME, root.parent / "site-packages")
    return root


def _environment(workspace: Path, tiny_bert: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    overrides = (f"--components.softprompt_ie.model.backbone {tiny_bert} --training.max_steps 2 "
                 "--training.eval_frequency 1 --training.optimizer.learn_rate.total_steps 2 "
                 "--training.optimizer.learn_rate.warmup_steps 1")
    return {
        **env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(workspace.parent / "site-packages"),
        "SPACY_CONFIG_OVERRIDES": overrides,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def script_of(block) -> str:
    """The block as a program: a ``>>>`` session keeps its statements and drops the outputs."""
    if not any(line.startswith(">>>") for line in block.body):
        return block.code
    return "".join(line[4:] + "\n" for line in block.body if line.startswith((">>>", "...")))


@pytest.mark.slow
@pytest.mark.parametrize("block", CODE_BLOCKS, ids=_block_id)
def test_readme_block_runs(block, request, tmp_path):
    for need in block.markers.get("needs", []):
        if not GATES[need]():
            pytest.skip(f"README line {block.first_line} needs: {need} (see this module's docstring)")
    workspace, tiny_bert = request.getfixturevalue("workspace"), request.getfixturevalue("tiny_bert")
    here = tmp_path / "clone"
    shutil.copytree(workspace, here, symlinks=True)
    (here.parent / "site-packages").symlink_to(workspace.parent / "site-packages")
    if block.language == "python":
        (here / "readme_block.py").write_text(script_of(block), encoding="utf8")
        command: List[str] = [sys.executable, "readme_block.py"]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    result = subprocess.run(command, cwd=here, env=_environment(here, tiny_bert), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, (
        f"README line {block.first_line} fails as written:\n{block.code}\n--- stdout\n{result.stdout[-3000:]}"
        f"\n--- stderr\n{result.stderr[-5000:]}"
    )


def test_markers_are_known_and_every_pasted_output_has_a_generator():
    assert len(CODE_BLOCKS) >= 8, "the README's code blocks were not found"
    for block in BLOCKS:
        where = f"README line {block.first_line}"
        assert set(block.markers) <= {"needs", "output"}, f"{where}: unknown marker {sorted(block.markers)}"
        assert set(block.markers.get("needs", [])) <= set(GATES), f"{where}: unknown needs {block.markers}"
        for name in block.markers.get("output", []):
            assert name in readme_outputs.GENERATORS, f"{where}: no generator for output {name!r}"
        if block.language not in RUNNABLE:  # not code: a pasted output, so it must be generated
            assert block.markers.get("output"), f"{where}: pasted output without <!-- output: NAME -->"
    long_runs = [b.first_line for b in CODE_BLOCKS if "long-run" in b.markers.get("needs", [])]
    assert len(long_runs) <= 2, f"README lines {long_runs}: each long-run block needs its reason in this docstring"


def test_the_pasted_conversion_summary_is_current(workspace, monkeypatch):
    (block,) = [b for b in BLOCKS if "sdoh-summary" in b.markers.get("output", [])]
    monkeypatch.setattr(readme_outputs, "ROOT", workspace)  # its assets/ are the shared corpora
    assert readme_outputs.sdoh_summary(block) == block.body, "run: python docs/readme_outputs.py sdoh-summary"


def test_the_doctest_session_is_regenerated_from_what_it_prints(workspace, monkeypatch):
    monkeypatch.syspath_prepend(str(workspace.parent / "site-packages"))
    (block,) = [b for b in BLOCKS if "doc-api" in b.markers.get("output", [])]
    regenerated = readme_outputs.doctest_session(block)
    assert [line for line in regenerated if line.startswith((">>>", "..."))] == [
        line for line in block.body if line.startswith((">>>", "..."))
    ]
    after_ents = regenerated[regenerated.index(next(l for l in regenerated if l.startswith(">>> doc.ents"))) + 1]
    assert after_ents.startswith("(")  # the tuple doc.ents, as this pipeline finds it
    text = (ROOT / "README.md").read_text(encoding="utf8")
    rewritten = readme_outputs.replace_block(text, block, regenerated)
    (again,) = [b for b in readme_outputs.read_blocks(rewritten) if "doc-api" in b.markers.get("output", [])]
    assert again.body == regenerated
    assert rewritten.replace("\n".join(regenerated), "\n".join(block.body)) == text
