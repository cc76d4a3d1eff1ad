"""One set of predictions, one count: the component's score(), the evaluate verb, and
export-brat + score-brat agree on every concept and relation count (relation
arguments missing from the span group made them differ). Lenient counts follow the
rule each names: exact matches first (score, evaluate) or the official script's
file order (score-brat, and the scorer's "official" option)."""
from __future__ import annotations

import json

from spacy.tokens import DocBin
from spacy.training import Example

from spacy_softprompt.cli import main
from spacy_softprompt.scoring import COUNTS, TARGETS, make_softprompt_scorer

from test_component import examples_for, make_pipeline, train


def test_score_evaluate_and_score_brat_count_the_same(tiny_bert, toy_docs, blank_nlp, tmp_path):
    nlp = make_pipeline(tiny_bert, "soft", False)
    train(nlp, examples_for(nlp, toy_docs), 12, 0.01)
    pipe = nlp.get_pipe("softprompt_ie")
    pipe.cfg.update(relation_threshold=0.01)  # many relation tails that are not predicted concepts
    nlp.to_disk(tmp_path / "pipeline")
    # Doc ids name the brat files; the gold keeps doc_id too.
    gold = []
    for i, doc in enumerate(toy_docs):
        doc._.doc_id = f"doc{i}"
        gold.append(doc)
    DocBin(store_user_data=True, docs=gold).to_disk(tmp_path / "gold.spacy")

    predicted = [nlp(doc.text) for doc in gold]
    assert sum(len(d._.relations) for d in predicted) > 0
    from_score = pipe.score([Example(p, g) for p, g in zip(predicted, gold)])

    assert main(["evaluate", str(tmp_path / "pipeline"), str(tmp_path / "gold.spacy"),
                 "--output", str(tmp_path / "evaluate.json")]) == 0
    from_evaluate = json.loads((tmp_path / "evaluate.json").read_text())

    assert main(["export-brat", str(tmp_path / "gold.spacy"), str(tmp_path / "gold_brat")]) == 0
    assert main(["export-brat", str(tmp_path / "gold.spacy"), str(tmp_path / "system_brat"),
                 "--pipeline", str(tmp_path / "pipeline")]) == 0
    assert main(["score-brat", str(tmp_path / "gold_brat"), str(tmp_path / "system_brat"),
                 "--output", str(tmp_path / "score_brat.json")]) == 0
    from_brat = json.loads((tmp_path / "score_brat.json").read_text())

    def counts(scores, mode):
        return {f"{t}_{mode}_{c}": scores[f"{t}_{mode}_{c}"] for t in TARGETS for c in COUNTS}

    assert counts(from_score, "strict") == counts(from_evaluate, "strict") == counts(from_brat, "strict")
    assert counts(from_score, "lenient") == counts(from_evaluate, "lenient")
    assert from_score["concepts_strict_tp"] + from_score["concepts_strict_fp"] > 0
    # Lenient: the package pairs exact matches first by default; its "official" rule is score-brat's.
    official = make_softprompt_scorer(lenient_matching="official")([Example(p, g) for p, g in zip(predicted, gold)])
    assert counts(official, "lenient") == counts(from_brat, "lenient")
