"""`spacy package` of a trained pipeline gives a wheel that installs into a separate
folder and loads by name with spacy.load in a fresh process."""
import subprocess
import sys

import pytest
import spacy

from conftest import RELATIONS, TEXTS, annotate, fit_pipeline


@pytest.mark.slow
def test_packaged_pipeline_installs_and_loads_by_name(tiny_bert, tmp_path):
    blank = spacy.blank("en")
    docs = [annotate(blank, t, m, RELATIONS.get(i, ())) for i, (t, m) in enumerate(TEXTS)]
    nlp = fit_pipeline(docs, 1, store_backbone=True,
                       model={"backbone": tiny_bert, "strategy": "soft", "prompt_length": 4})
    nlp.meta["name"] = "softprompt_pkgtest"
    nlp.meta["version"] = "0.0.1"
    nlp.to_disk(tmp_path / "pipeline")
    expected = [(s.start_char, s.end_char, s.label_) for s in nlp(TEXTS[0][0]).spans["softprompt"]]

    (tmp_path / "packages").mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "spacy", "package", str(tmp_path / "pipeline"), str(tmp_path / "packages"),
         "--build", "wheel", "--force"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    wheels = list((tmp_path / "packages").rglob("*.whl"))
    assert len(wheels) == 1
    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(site),
         str(wheels[0])],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    code = (
        "import spacy, json; nlp = spacy.load('en_softprompt_pkgtest');"
        f"doc = nlp({TEXTS[0][0]!r});"
        "print(json.dumps([[s.start_char, s.end_char, s.label_] for s in doc.spans['softprompt']]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    assert [tuple(x) for x in json.loads(out.stdout.strip().splitlines()[-1])] == expected
