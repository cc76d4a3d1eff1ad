"""End to end through spaCy's own CLI: `spacy train` with a shipped config on an ADE
subset and the offline default backbone, then `evaluate`. Marked slow; `make test`
runs it in this small form (a few sentences, a few steps)."""
import json
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from conftest import ROOT, SHARED_DATA, require_shared

CONFIGS = ROOT / "configs"


@pytest.mark.slow
def test_spacy_train_soft_prompt_frozen_on_ade_subset(tmp_path):
    require_shared(SHARED_DATA / "ade-corpus-v2")
    from spacy_softprompt.corpora.ade import read_ade

    nlp = spacy.blank("en")
    for split, n in (("train", 4), ("dev", 3)):
        docs, _ = read_ade(SHARED_DATA / "ade-corpus-v2", nlp, split=split)
        DocBin(store_user_data=True, docs=docs[:n]).to_disk(tmp_path / f"{split}.spacy")
    out = subprocess.run(
        [sys.executable, "-m", "spacy", "train", str(CONFIGS / "soft_prompt_frozen.cfg"),
         "--output", str(tmp_path / "training"),
         "--paths.train", str(tmp_path / "train.spacy"), "--paths.dev", str(tmp_path / "dev.spacy"),
         "--training.max_steps", "4", "--training.eval_frequency", "2"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    best = tmp_path / "training" / "model-best"
    meta = json.loads((best / "meta.json").read_text())
    assert {"conc_f", "rel_f", "ents_f"} <= set(meta["performance"])
    assert "CONC_F" in out.stdout and "REL_F" in out.stdout  # spaCy's own training table shows them
    assert sorted(p.name for p in (best / "softprompt_ie" / "model").iterdir()) == ["task.json", "trainable.safetensors"]

    metrics = tmp_path / "metrics.json"
    out = subprocess.run(
        [sys.executable, "-m", "spacy_softprompt", "evaluate", str(best), str(tmp_path / "dev.spacy"),
         "--output", str(metrics)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    scores = json.loads(metrics.read_text())
    assert {"concepts_strict_f", "concepts_lenient_f", "relations_strict_f", "relations_lenient_f"} <= set(scores)
