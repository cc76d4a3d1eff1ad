"""`scaling`: words/s vs number of concept types for every system, on tiny inputs.
Checks the measurement's shape and files, never the timings."""
import json

from spacy.tokens import DocBin

from spacy_softprompt.cli import main
from spacy_softprompt.cli.scaling import systems

from conftest import TEXTS, annotate


def test_scaling_times_every_system_and_schema(tiny_bert, blank_nlp, tmp_path):
    docs = [annotate(blank_nlp, text, mentions) for text, mentions in TEXTS]
    DocBin(store_user_data=True, docs=docs).to_disk(tmp_path / "toy.spacy")
    report = tmp_path / "scaling.md"
    code = main(["scaling", "--texts", str(tmp_path / "toy.spacy"), "--types", "2", "4",
                 "--real", f"toy={tmp_path / 'toy.spacy'}", "--prompt-layers", "1", "--prompt-length", "4",
                 "--backbone", tiny_bert, "--output", str(report)])
    assert code == 0
    data = json.loads(report.with_suffix(".json").read_text())
    names = [name for name, _ in systems([1])]
    assert len(names) == 5  # stock, none, input prompts, late k=1, packed late k=1
    cells = {(r["system"], r["schema"], r["n_types"]) for r in data["rows"]}
    # the toy corpus has 3 types (ADE, Dose, Drug): the real-schema column has N=3
    assert cells == {(n, s, k) for n in names for s, k in (("synthetic", 2), ("synthetic", 4), ("toy (real)", 3))}
    assert all(r["words_per_second"] > 0 for r in data["rows"])
    text = report.read_text()
    assert "synthetic N=4 (toy)" in text and "toy (real) N=3 (toy)" in text
    assert report.with_suffix(".png").stat().st_size > 0
