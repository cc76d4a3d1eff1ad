"""Smoking and alcohol status from SHAC events (corpora/status.py): the rule on hand-built cases,
``convert brat --cats-from-status`` on a tiny brat folder (doc.cats written, every annotation as
without it), its errors, and docs/sdoh_status.md's counts against the real SDoH corpus."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List

import pytest
import spacy
from spacy.tokens import Doc, DocBin

import spacy_softprompt  # noqa: F401  (registers the extensions)
from spacy_softprompt.cli import main
from spacy_softprompt.corpora.brat import read_brat
from spacy_softprompt.corpora.status import (
    CURRENT, NEVER, PAST, PRECEDENCE, SDOH_TASKS, STATUS_LABELS, UNKNOWN, add_status_cats, status_cats,
    status_label,
)
from spacy_softprompt.corpora.summary import ConversionSummary, CorpusFormatError

from conftest import ROOT, SHARED_DATA, require_shared



@pytest.mark.parametrize("events, label, mixed", [
    ([], UNKNOWN, False),                                     # no event of the type
    ([["current"]], CURRENT, False),
    ([["past"], ["current"]], CURRENT, True),                 # current beats past
    ([["current", "none"]], CURRENT, True),                   # ... and none, within one event too
    ([["none"], ["past"], ["past"]], PAST, True),             # past beats none
    ([["past"]], PAST, False),
    ([["none"]], NEVER, False),
    ([[], ["none"]], NEVER, False),                           # an event without status decides nothing
    ([["future"], ["none"]], NEVER, False),                   # nor does future
    ([["future"]], UNKNOWN, False),
    ([["unknown"], []], UNKNOWN, False),                      # events, but no current/past/none
])
def test_rule(events, label, mixed):
    decision = status_label(events, "Tobacco")
    assert (decision.label, decision.mixed) == (label, mixed)
    assert decision.reason.startswith(f"{label}: ")


def test_the_rule_as_documented():
    """docs/sdoh_status.md states these; changing the rule must change them (and the docs)."""
    assert STATUS_LABELS == ("current", "past", "never", "unknown")
    assert PRECEDENCE == (("current", "current"), ("past", "past"), ("none", "never"))
    assert SDOH_TASKS == {"smoking": "Tobacco", "alcohol": "Alcohol"}
    assert status_label([], "Alcohol").reason == "unknown: no Alcohol event"
    assert status_label([["past"], ["none"]]).reason == "past: an event is past (also none: past takes precedence)"
    assert status_cats(PAST) == {"current": 0.0, "past": 1.0, "never": 0.0, "unknown": 0.0}
    with pytest.raises(ValueError, match="not a status class"):
        status_cats("former")


# Four notes: smoker who quit drinking (two Tobacco events: current and past), a non-smoker,
# a note without substance events, a Tobacco event without a Status argument.
NOTES: Dict[str, tuple] = {
    "a": ("He smokes daily, smoked for 20 years. Quit alcohol in 1990.",
          "T1\tTobacco 3 9\tsmokes\n"
          "T2\tStatusTime 3 9\tsmokes\n"
          "T3\tFrequency 10 15\tdaily\n"
          "E1\tTobacco:T1 Status:T2 Frequency:T3\n"
          "A1\tStatusTimeVal T2 current\n"
          "T4\tTobacco 17 23\tsmoked\n"
          "T5\tStatusTime 17 23\tsmoked\n"
          "T6\tHistory 24 36\tfor 20 years\n"
          "E2\tTobacco:T4 Status:T5 History:T6\n"
          "A2\tStatusTimeVal T5 past\n"
          "T7\tStatusTime 38 42\tQuit\n"
          "T8\tAlcohol 43 50\talcohol\n"
          "E3\tAlcohol:T8 Status2:T7\n"
          "A3\tStatusTimeVal T7 past\n"),
    "b": ("Denies tobacco or alcohol.",
          "T1\tStatusTime 0 6\tDenies\n"
          "T2\tTobacco 7 14\ttobacco\n"
          "T3\tAlcohol 18 25\talcohol\n"
          "E1\tTobacco:T2 Status:T1\n"
          "E2\tAlcohol:T3 Status:T1\n"
          "A1\tStatusTimeVal T1 none\n"
          "#1\tAnnotatorNotes T1\tone status, two events\n"),
    "c": ("Lives with his wife.",
          "T1\tLivingSituation 0 5\tLives\n"
          "E1\tLivingSituation:T1\n"),
    "d": ("Tobacco: 1 ppd.",
          "T1\tTobacco 0 7\tTobacco\n"
          "T2\tAmount 9 14\t1 ppd\n"
          "E1\tTobacco:T1 Amount:T2\n"),
}
EXPECTED = {"Tobacco": {"a": CURRENT, "b": NEVER, "c": UNKNOWN, "d": UNKNOWN},
            "Alcohol": {"a": PAST, "b": NEVER, "c": UNKNOWN, "d": UNKNOWN}}


def write_notes(folder: Path, notes: Dict[str, tuple]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (text, ann) in notes.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
        (folder / f"{name}.ann").write_text(ann, encoding="utf-8")
    return folder


def load(path: Path) -> List[Doc]:
    return list(DocBin(store_user_data=True).from_disk(path).get_docs(spacy.blank("en").vocab))


def annotations(doc: Doc):
    spans = [(s.start_char, s.end_char, s.label_, dict(s._.attributes)) for s in doc.spans["softprompt"]]
    relations = sorted(r.key() for r in doc._.relations)
    return spans, relations, [(e.start_char, e.end_char, e.label_) for e in doc.ents]


@pytest.mark.parametrize("event_type", ["Tobacco", "Alcohol"])
def test_convert_writes_cats_and_keeps_every_annotation(tmp_path, event_type, capsys):
    source = write_notes(tmp_path / "brat", NOTES)
    plain, with_cats = tmp_path / "plain.spacy", tmp_path / "cats.spacy"
    assert main(["convert", "brat", str(source), str(plain), "--summary", str(tmp_path / "plain.json")]) == 0
    assert main(["convert", "brat", str(source), str(with_cats), "--cats-from-status", event_type,
                 "--summary", str(tmp_path / "cats.json")]) == 0
    printed = capsys.readouterr().out
    docs = load(with_cats)
    assert {d._.doc_id: max(d.cats, key=d.cats.get) for d in docs} == EXPECTED[event_type]
    assert all(sorted(d.cats.values()) == [0.0, 0.0, 0.0, 1.0] and list(d.cats) == list(STATUS_LABELS)
               for d in docs)
    assert [annotations(d) for d in docs] == [annotations(d) for d in load(plain)]
    assert all(not d.cats for d in load(plain))
    # the summary accounts for the same annotations, and adds the classes with their reasons
    before, after = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("plain", "cats"))
    assert {k: v for k, v in after.items() if not k.startswith("cats")} == {
        k: v for k, v in before.items() if not k.startswith("cats")}
    assert before["cats"] == {} and sum(after["not_converted"].values()) == 1  # the note
    assert after["entities"]["Tobacco"] == 4
    assert sum(after["attributes"].values()) == 4 and after["relations"]["Status"] == 5
    counts = {label: list(EXPECTED[event_type].values()).count(label) for label in STATUS_LABELS}
    assert after["cats"] == dict(sorted(counts.items()))
    if event_type == "Tobacco":
        assert after["cats_reasons"] == {
            "current: an event is current (also past: current takes precedence)": 1,
            "never: an event is none": 1,
            "unknown: Tobacco events without a current, past or none status": 1,
            "unknown: no Tobacco event": 1,
        }
    table = "\n".join(f"| {label} | {counts[label]} |" for label in STATUS_LABELS)
    assert f"### Document classes (doc.cats)\n\n| class | documents |\n| --- | ---: |\n{table}\n" in printed


def test_status_errors(tmp_path, capsys):
    source = write_notes(tmp_path / "brat", NOTES)
    out = tmp_path / "x.spacy"
    assert main(["convert", "brat", str(source), str(out), "--cats-from-status", "Tobaco"]) == 2
    err = capsys.readouterr().err
    assert "--cats-from-status: no Tobaco event in any document" in err
    assert "event types found: Alcohol, LivingSituation, Tobacco" in err and not out.exists()
    assert main(["convert", "ade", str(tmp_path), str(out), "--cats-from-status", "Tobacco"]) == 2
    assert "applies to brat input only" in capsys.readouterr().err
    text, ann = NOTES["b"]
    bad = write_notes(tmp_path / "bad", {"b": (text, ann.replace("T1 none", "T1 nonee"))})
    assert main(["convert", "brat", str(bad), str(out), "--cats-from-status", "Tobacco"]) == 2
    assert f"{bad / 'b.ann'}:6: unexpected StatusTimeVal value 'nonee'" in capsys.readouterr().err
    summary = ConversionSummary(lenient=True)
    docs, _ = read_brat(bad, spacy.blank("en"))
    add_status_cats(docs, "Tobacco", summary, bad)
    assert summary.problems[0].startswith(f"{bad / 'b.ann'}:6:") and summary.cats[UNKNOWN] == 1
    with pytest.raises(CorpusFormatError, match="expected one of current, past, future, none, unknown"):
        add_status_cats(docs, "Tobacco", ConversionSummary(), bad)


PRECEDENCE_COLUMNS = (("current", "past"), ("current", "none"), ("past", "none"))


def documented_counts() -> Dict[str, Dict[str, Dict[str, int]]]:
    """The two tables of docs/sdoh_status.md: task -> split -> label (or "winner over loser") ->
    documents."""
    text = (ROOT / "docs" / "sdoh_status.md").read_text(encoding="utf-8")
    counts: Dict[str, Dict[str, Dict[str, int]]] = {}
    for task, split, numbers in re.findall(r"^\| (smoking|alcohol) \| (train|dev|test) \| ([\d |]+) \|$",
                                           text, flags=re.M):
        row = counts.setdefault(task, {}).setdefault(split, {})
        values = [int(n) for n in numbers.split(" | ")]
        if len(values) == len(STATUS_LABELS) + 1:
            *per_label, total = values
            assert sum(per_label) == total
            row.update(zip(STATUS_LABELS, per_label))
        else:
            row.update(zip((f"{a} over {b}" for a, b in PRECEDENCE_COLUMNS), values))
    return counts


def test_documented_counts_are_the_corpus():
    """docs/sdoh_status.md's table is what the converter gives on the real SDoH splits."""
    sdoh = require_shared(SHARED_DATA / "sdoh-mtsamples")
    computed: Dict[str, Dict[str, Dict[str, int]]] = {}
    for split in ("train", "dev", "test"):
        docs, _ = read_brat(sdoh / split, spacy.blank("en"))
        for task, event_type in SDOH_TASKS.items():
            summary = ConversionSummary()
            add_status_cats(docs, event_type, summary, sdoh / split)
            row = computed.setdefault(task, {}).setdefault(split, dict(summary.cats))
            for winner, loser in PRECEDENCE_COLUMNS:  # a reason names the winner and every other value
                row[f"{winner} over {loser}"] = sum(n for reason, n in summary.cats_reasons.items() if re.match(
                    rf"{dict(PRECEDENCE)[winner]}: an event is {winner} "
                    rf"\(also [^)]*\b{loser}\b", reason))
    assert documented_counts() == computed
