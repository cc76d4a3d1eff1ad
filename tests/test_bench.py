"""`bench --quick`: the benchmark's whole path (stock transformer+ner and every
strategy, trained with spaCy, scored, measured) on a tiny ADE subset. CI runs it;
its figures are not reported."""
import json

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_softprompt.cli import main

from conftest import SHARED_DATA


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "ade-corpus-v2").exists(), reason="needs ../shared/data/ade-corpus-v2")
def test_bench_quick_measures_every_system(tmp_path):
    from spacy_softprompt.cli.bench import SYSTEMS
    from spacy_softprompt.corpora.ade import read_ade

    nlp = spacy.blank("en")
    for split in ("train", "dev", "test"):
        docs, _ = read_ade(SHARED_DATA / "ade-corpus-v2", nlp, split=split)
        DocBin(store_user_data=True, docs=docs[:30]).to_disk(tmp_path / f"{split}.spacy")
    report = tmp_path / "bench.md"
    code = main(["bench", "--quick", "--train", str(tmp_path / "train.spacy"), "--dev", str(tmp_path / "dev.spacy"),
                 "--test", str(tmp_path / "test.spacy"), "--output", str(report), "--runs", str(tmp_path / "runs")])
    assert code == 0
    data = json.loads(report.with_suffix(".json").read_text())
    assert [r["system"] for r in data["systems"]] == [s.name for s in SYSTEMS]
    assert data["quick"] and data["data"]["train"]["documents"] == 24
    by_config = {r["run"]: r for r in data["systems"]}
    for row in data["systems"]:
        assert row["train_seconds"] > 0 and row["peak_train_rss_mb"] > 100 and row["words_per_second"] > 0
        assert row["trainable_parameters"] > 0 and row["pipeline_mb"] > 0
    assert by_config["stock_transformer_ner"]["relations_strict_f"] is None
    # late prompts for the strategies, and the naive input-prompt path beside them
    assert by_config["soft_prompt"]["prompt_layer"] == 4 and by_config["soft_prompt_frozen_input"]["prompt_layer"] == 0
    trained = spacy.util.load_config(tmp_path / "runs" / "soft_prompt" / "model-best" / "config.cfg")
    assert trained["components"]["softprompt_ie"]["model"]["prompt_layer"] == 4
    # frozen strategies train only prompts and head: far fewer parameters than fine-tuning
    frozen = by_config["soft_prompt_frozen"]["trainable_parameters"]
    assert frozen < 0.05 * by_config["finetune"]["trainable_parameters"]
    assert by_config["soft_prompt_frozen"]["component_mb"] < 0.01 * by_config["soft_prompt"]["component_mb"]
    assert "quick form: figures mean nothing" in report.read_text()
