"""``score-brat`` against the official n2c2 2018 track 2 rules, re-stated here independently.

The reference below (``official_*``) follows the script's own steps, written
plainly: read ``T`` then ``R`` lines into dicts keyed by id, keep per label the
gold and system lists in file order, "pare down" the system list (a system item
matching a gold item that an earlier system item already matched is dropped),
then TP = kept system items matching some gold item, FP = the other kept ones,
FN = gold - TP. Only ``.ann`` names present in both folders are scored.

Seeded corpora perturb the gold (drops, boundary shifts with and without
whitespace at the new edge, relabels, spurious spans overlapping gold,
duplicates, nested same-label gold, discontinuous spans, shuffled line order,
event/attribute/note lines) and every per-label and micro count must agree.
Hand-worked cases pin the rules down where both could share a mistake.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from spacy_softprompt.brat_scoring import read_ann, score_brat_folders
from spacy_softprompt.cli import main as cli

LABELS = ("Drug", "ADE", "Dosage")
WORDS = "aspirin rash mg daily left lung lobe pain chest and the with severe tablet po bid hives".split()


# --- the reference: the official rules, re-stated ------------------------------------------


def official_read(path: Path) -> Tuple[Dict[str, dict], Dict[str, dict]]:
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle.readlines()]
    tags: Dict[str, dict] = {}
    for line in lines:
        if line.startswith("T"):
            tid, middle, _text = line.split("\t")
            fields = middle.split(" ")
            # "Drug 0 5;9 14" -> fields ["Drug", "0", "5;9", "14"]: start 0, end 14.
            tags[tid] = {"type": fields[0], "start": int(fields[1]), "end": int(fields[-1])}
    rels: Dict[str, dict] = {}
    for line in lines:
        if line.startswith("R"):
            rid, middle = line.split("\t")[:2]
            rtype, first, second = middle.split(" ")
            rels[rid] = {"type": rtype, "args": [tags[first.split(":")[1]], tags[second.split(":")[1]]]}
    return tags, rels


def tag_equal(a: dict, b: dict, lenient: bool) -> bool:
    if a["type"] != b["type"]:
        return False
    if lenient:
        return a["start"] < b["end"] and b["start"] < a["end"]
    return a["start"] == b["start"] and a["end"] == b["end"]


def rel_equal(a: dict, b: dict, lenient: bool) -> bool:
    return a["type"] == b["type"] and all(tag_equal(x, y, lenient) for x, y in zip(a["args"], b["args"]))


def official_file_counts(gold: List[dict], system: List[dict], equal) -> Counter:
    matched: List[dict] = []
    kept = list(system)
    for s in system:
        for g in gold:
            if equal(g, s):
                if any(g is m for m in matched):
                    kept = [k for k in kept if k is not s]
                else:
                    matched.append(g)
    tp = sum(1 for s in kept if any(equal(g, s) for g in gold))
    return Counter(tp=tp, fp=len(kept) - tp, fn=len(gold) - tp)


def official_scores(gold_dir: Path, system_dir: Path, system_order=None) -> Dict[Tuple[str, str, str], Counter]:
    """{(target, mode, label or "micro"): Counter(tp, fp, fn)}."""
    names = {p.name for p in gold_dir.glob("*.ann")} & {p.name for p in system_dir.glob("*.ann")}
    out: Dict[Tuple[str, str, str], Counter] = {}
    for name in names:
        gold_tags, gold_rels = official_read(gold_dir / name)
        sys_tags, sys_rels = official_read(system_dir / name)
        for target, g_all, s_all, eq in (
            ("concepts", gold_tags, sys_tags, tag_equal),
            ("relations", gold_rels, sys_rels, rel_equal),
        ):
            system_items = list(s_all.values()) if system_order is None else system_order(list(s_all.values()))
            for mode in ("strict", "lenient"):
                lenient = mode == "lenient"
                for label in {x["type"] for x in g_all.values()} | {x["type"] for x in system_items}:
                    gold_l = [g for g in g_all.values() if g["type"] == label]
                    sys_l = [s for s in system_items if s["type"] == label]
                    counts = official_file_counts(gold_l, sys_l, lambda a, b: eq(a, b, lenient))
                    for key in ((target, mode, label), (target, mode, "micro")):
                        out.setdefault(key, Counter()).update(counts)
    return out


def assert_same_counts(scores: dict, expected: Dict[Tuple[str, str, str], Counter]) -> None:
    labels_seen = set()
    for (target, mode, label), counts in expected.items():
        if label == "micro":
            got = {k: scores[f"{target}_{mode}_{k}"] for k in ("tp", "fp", "fn")}
        else:
            per_type = scores[f"{target}_{mode}_per_type"]
            got = {k: per_type[label][k] for k in ("tp", "fp", "fn")} if label in per_type else {}
            labels_seen.add((target, mode, label))
        assert got == {k: counts[k] for k in ("tp", "fp", "fn")}, (target, mode, label)
    for target in ("concepts", "relations"):
        for mode in ("strict", "lenient"):
            extra = {label for label in scores[f"{target}_{mode}_per_type"]} - {
                label for t, m, label in labels_seen if (t, m) == (target, mode)
            }
            assert not extra, (target, mode, extra)


# --- seeded corpora -------------------------------------------------------------------------


class Perturbed:
    """One gold/system pair of .ann files with seeded perturbations; counts what it did."""

    def __init__(self, rng: random.Random, stats: Counter):
        words = [rng.choice(WORDS) for _ in range(rng.randint(25, 45))]
        seps = [rng.choice([" ", " ", " ", "  ", "\n", ", "]) for _ in words]
        self.text, self.words, pos = "", [], 0
        for word, sep in zip(words, seps):
            self.words.append((pos, pos + len(word)))
            self.text += word + sep
            pos += len(word) + len(sep)
        self.rng, self.stats = rng, stats
        self.gold_t: List[Tuple[str, str, str]] = []  # (id, "Label offsets", text)
        self.gold_r: List[str] = []
        self.sys_t: List[Tuple[str, str, str]] = []
        self.sys_r: List[str] = []
        self._gold(rng)
        self._system(rng)

    def _t(self, store: list, label: str, frags: List[Tuple[int, int]]) -> str:
        tid = f"T{len(store) + 1}"
        offsets = ";".join(f"{s} {e}" for s, e in frags)
        text = " ".join(self.text[s:e].replace("\n", " ") for s, e in frags)
        store.append((tid, f"{label} {offsets}", text))
        return tid

    def _gold(self, rng: random.Random) -> None:
        n = len(self.words)
        self.gold_spans: Dict[str, Tuple[str, int, int]] = {}
        for _ in range(rng.randint(4, 9)):
            i = rng.randrange(n - 3)
            j = i + rng.randint(0, 2)
            label = rng.choice(LABELS)
            start, end = self.words[i][0], self.words[j][1]
            if j - i == 2 and rng.random() < 0.3:  # discontinuous: first and last word
                tid = self._t(self.gold_t, label, [self.words[i], self.words[j]])
                self.stats["discontinuous"] += 1
            else:
                tid = self._t(self.gold_t, label, [(start, end)])
            self.gold_spans[tid] = (label, start, end)
            if j > i and rng.random() < 0.4:  # nested gold of the same label
                k = rng.randint(i, j)
                inner = self._t(self.gold_t, label, [self.words[k]])
                self.gold_spans[inner] = (label, *self.words[k])
                self.stats["nested"] += 1
        ids = list(self.gold_spans)
        drugs = [t for t in ids if self.gold_spans[t][0] == "Drug"]
        for drug in drugs:
            for other in rng.sample(ids, min(2, len(ids))):
                if other != drug:
                    rtype = f"{self.gold_spans[other][0]}-Drug"
                    self.gold_r.append(f"R{len(self.gold_r) + 1}\t{rtype} Arg1:{other} Arg2:{drug}\t")

    def _shift(self, rng: random.Random, start: int, end: int) -> Tuple[int, int]:
        """Move one edge; sometimes onto whitespace (the old scorer trimmed it away)."""
        for _ in range(10):
            s, e = start, end
            if rng.random() < 0.5:
                e = end + rng.choice([1, 1, 2, -1, -2])
            else:
                s = start + rng.choice([-1, -1, -2, 1, 2])
            if 0 <= s < e <= len(self.text) and (s, e) != (start, end):
                edge = self.text[e - 1] if e != end else self.text[s]
                self.stats["shift_whitespace_edge" if edge.isspace() else "shift_other_edge"] += 1
                return s, e
        return start, end

    def _system(self, rng: random.Random) -> None:
        to_system: Dict[str, List[str]] = {}
        for tid, (label, start, end) in self.gold_spans.items():
            r = rng.random()
            if r < 0.12:
                self.stats["drop"] += 1
                continue
            if r < 0.35:
                start, end = self._shift(rng, start, end)
            elif r < 0.45:
                label = rng.choice([x for x in LABELS if x != label])
                self.stats["relabel"] += 1
            to_system.setdefault(tid, []).append(self._t(self.sys_t, label, [(start, end)]))
            if rng.random() < 0.1:  # duplicate with another id
                to_system[tid].append(self._t(self.sys_t, label, [(start, end)]))
                self.stats["duplicate"] += 1
            if rng.random() < 0.3:  # spurious, overlapping this gold span
                s = max(0, start - rng.randint(0, 4))
                e = min(len(self.text), s + rng.randint(2, 8))
                if s < end and start < e:
                    self._t(self.sys_t, label, [(s, e)])
                    self.stats["spurious_overlap"] += 1
        for line in self.gold_r:
            rid, middle, _ = line.split("\t")
            rtype, a1, a2 = middle.split(" ")
            heads, tails = to_system.get(a1[5:], []), to_system.get(a2[5:], [])
            if not heads or not tails or rng.random() < 0.15:
                continue
            if rng.random() < 0.1:
                rtype = rng.choice(["Reason-Drug", "ADE-Drug", "Dosage-Drug"])
            self.sys_r.append(f"R{len(self.sys_r) + 1}\t{rtype} Arg1:{rng.choice(heads)} Arg2:{rng.choice(tails)}")
        if len(self.sys_t) >= 2 and rng.random() < 0.5:
            a, b = rng.sample([t[0] for t in self.sys_t], 2)
            self.sys_r.append(f"R{len(self.sys_r) + 1}\tADE-Drug Arg1:{a} Arg2:{b}")

    def write(self, gold_dir: Path, system_dir: Path, name: str) -> None:
        gold_lines = [f"{i}\t{m}\t{t}" for i, m, t in self.gold_t] + self.gold_r
        gold_lines += ["A1\tNegated T1", "#1\tAnnotatorNotes T1\tchecked", "E1\tADE:T1 Cause:T2", "*\tOverlap T1 T2"]
        system_lines = [f"{i}\t{m}\t{t}" for i, m, t in self.sys_t] + self.sys_r
        self.rng.shuffle(gold_lines)
        self.rng.shuffle(system_lines)
        for folder, lines in ((gold_dir, gold_lines), (system_dir, system_lines)):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.txt").write_text(self.text, encoding="utf-8")
            (folder / f"{name}.ann").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_corpus(root: Path, seed: int, stats: Counter, n_docs: int = 6) -> Tuple[Path, Path]:
    rng = random.Random(seed)
    gold, system = root / f"gold{seed}", root / f"system{seed}"
    for d in range(n_docs):
        Perturbed(rng, stats).write(gold, system, f"doc{d}")
    return gold, system


SEEDS = range(30)


def test_seeded_perturbations_give_the_official_counts(tmp_path: Path):
    stats: Counter = Counter()
    file_order_matters = 0
    for seed in SEEDS:
        gold, system = build_corpus(tmp_path, seed, stats)
        expected = official_scores(gold, system)
        assert_same_counts(score_brat_folders(gold, system), expected)
        by_offsets = official_scores(gold, system, lambda items: sorted(items, key=lambda x: str(x)))
        file_order_matters += by_offsets != expected
    # The corpora exercise what they claim to (else this test could not fail for those rules).
    for what in ("drop", "relabel", "duplicate", "spurious_overlap", "nested", "discontinuous"):
        assert stats[what] > 5, (what, stats)
    assert stats["shift_whitespace_edge"] > 5 and stats["shift_other_edge"] > 5, stats
    assert file_order_matters, "no corpus where the system file's order changes the counts"


def test_cli_writes_the_official_counts(tmp_path: Path, capsys: pytest.CaptureFixture):
    gold, system = build_corpus(tmp_path, 99, Counter(), n_docs=4)
    (gold / "doc0.ann").unlink()  # system only: skipped
    (system / "doc1.ann").unlink()  # gold only: skipped, as the script does
    out = tmp_path / "scores.json"
    assert cli(["score-brat", str(gold), str(system), "--output", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["documents"] == 2
    assert (scores["missing_in_system"], scores["only_in_system"]) == (["doc1"], ["doc0"])
    assert_same_counts(scores, official_scores(gold, system))
    assert "official n2c2 2018 track 2" in capsys.readouterr().out


# --- hand-worked cases ----------------------------------------------------------------------


def pair(tmp_path: Path, gold_ann: str, system_ann: str, text: str = "x" * 60) -> dict:
    for folder, ann in (("gold", gold_ann), ("system", system_ann)):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / "d.txt").write_text(text, encoding="utf-8")
        (tmp_path / folder / "d.ann").write_text(ann, encoding="utf-8")
    scores = score_brat_folders(tmp_path / "gold", tmp_path / "system")
    assert_same_counts(scores, official_scores(tmp_path / "gold", tmp_path / "system"))
    return scores


def counts(scores: dict, prefix: str) -> Tuple[int, int, int]:
    return scores[f"{prefix}_tp"], scores[f"{prefix}_fp"], scores[f"{prefix}_fn"]


def test_whitespace_at_the_new_edge_is_a_strict_miss(tmp_path: Path):
    # "Take aspirin daily": aspirin is 5-12; the system span 5-13 ends on the space.
    scores = pair(tmp_path, "T1\tDrug 5 12\taspirin\n", "T1\tDrug 5 13\taspirin \n", "Take aspirin daily\n")
    assert counts(scores, "concepts_strict") == (0, 1, 1)
    assert counts(scores, "concepts_lenient") == (1, 0, 0)


def test_file_order_of_the_system_decides_the_pare_down(tmp_path: Path):
    gold = "T1\tADE 0 10\tg1\nT2\tADE 20 30\tg2\n"
    wide, right, left = "Ta\tADE 5 25\tw\n", "Tb\tADE 22 28\tr\n", "Tc\tADE 0 4\tl\n"
    # wide first: it claims g1 and g2 (TP); the two others touch claimed gold: ignored.
    first = pair(tmp_path, gold, wide + right + left)
    assert counts(first, "concepts_lenient") == (1, 0, 1) and first["concepts_lenient_ignored"] == 2
    # wide last: left claims g1, right claims g2 (2 TP); wide is ignored.
    last = pair(tmp_path, gold, left + right + wide)
    assert counts(last, "concepts_lenient") == (2, 0, 0) and last["concepts_lenient_ignored"] == 1


def test_nested_same_label_gold_with_a_perfect_system(tmp_path: Path):
    ann = "T1\tAnatomy 12 26\tleft lung lobe\nT2\tAnatomy 17 21\tlung\n"
    scores = pair(tmp_path, ann, ann, "Mass in the left lung lobe.\n")
    assert counts(scores, "concepts_strict") == (2, 0, 0)
    # Official: the outer prediction claims both gold spans; the inner one is ignored.
    assert counts(scores, "concepts_lenient") == (1, 0, 1)


def test_discontinuous_is_its_covering_span_and_duplicates_stay_distinct(tmp_path: Path):
    gold = "T1\tDrug 0 5;9 14\tab cd\nT2\tADE 20 25\tx\nT3\tADE 20 25\tx\n"
    system = "T7\tDrug 0 14\tab xx cd\nT8\tADE 20 25\tx\nT9\tDrug 0 14\tab xx cd\n"
    scores = pair(tmp_path, gold, system)
    # Drug: T7 = covering span of T1 (TP); T9 identical to T7 with another id: ignored.
    # ADE: T8 claims both identical gold items: TP 1, FN 1.
    assert counts(scores, "concepts_strict") == (2, 0, 1) and scores["concepts_strict_ignored"] == 1


def test_relations_use_argument_order_and_ignore_other_lines(tmp_path: Path):
    concepts = "T1\tADE 0 4\trash\nT2\tDrug 10 17\taspirin\n"
    gold = concepts + "R1\tADE-Drug Arg1:T1 Arg2:T2\t\nE1\tADE:T1 Cause:T2\n*\tOverlap T1 T2\nA1\tNeg T1\n"
    system = "R5\tADE-Drug Arg2:T2 Arg1:T1\nR6\tADE-Drug Arg1:T1 Arg2:T2\n" + concepts  # R before T
    scores = pair(tmp_path, gold, system)
    # R5 lists T2 first, so its first argument is the Drug: no match (FP). R6 matches.
    assert counts(scores, "relations_strict") == (1, 1, 0)
    assert counts(scores, "concepts_strict") == (2, 0, 0)


def test_malformed_lines_are_reported_not_raised(tmp_path: Path):
    path = tmp_path / "bad.ann"
    path.write_text("\ufeffT1\tDrug 0 4\tx\nT2\tDrug\tno offsets\nR1\tADE-Drug Arg1:T1 Arg2:T9\n", encoding="utf-8")
    ann = read_ann(path)
    assert list(ann.concepts) == ["T1"] and not ann.relations
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in ann.problems] == ["1", "2", "3"]
    assert "unknown id T9" in ann.problems[2]


def test_four_fragments_are_read_as_their_covering_span_and_reported(tmp_path: Path):
    """The docs said such a line is reported (the official script misreads it); it was read in silence."""
    path = tmp_path / "frag.ann"
    path.write_text("T1\tDrug 0 2;3 5;6 8;9 11\tab cd ef gh\nT2\tDrug 0 2;3 5;6 8\tab cd ef\n", encoding="utf-8")
    ann = read_ann(path)
    assert ann.concepts["T1"][:2] == (0, 11) and ann.concepts["T2"][:2] == (0, 8)
    assert ann.problems == [f"{path}:1: four or more fragments, which the official script misreads; scored as the "
                            "covering span 0-11"]


def test_a_file_that_is_not_utf8_or_not_brat_is_reported(tmp_path: Path):
    """A UTF-16 system file was read with its bytes replaced and scored as empty, without a word; a line brat does not
    have was dropped as silently (attributes, notes and equivalences are still skipped without one)."""
    path = tmp_path / "wide.ann"
    path.write_text("T1\tDrug 0 4\tx\n", encoding="utf-16")
    ann = read_ann(path)
    assert not ann.concepts and len(ann.problems) == 1 and "wide.ann: not UTF-8 text (byte 0" in ann.problems[0]
    path.write_text("T1\tDrug 0 4\tx\nA1\tNeg T1\n#1\tNote T1\tseen\n*\tOverlap T1 T1\nX1 what\n", encoding="utf-8")
    ann = read_ann(path)
    assert list(ann.concepts) == ["T1"] and ann.problems == [
        f"{path}:5: not a brat annotation line, not scored: 'X1 what'"]


def test_relation_argument_naming_an_event_is_its_trigger(tmp_path: Path):
    # The script stops with a KeyError on such a file (MACCROBAT writes them); we read the trigger.
    path = tmp_path / "events.ann"
    path.write_text(
        "T1\tSign_symptom 0 4\tpain\nE1\tSign_symptom:T1\nT2\tSeverity 5 11\tsevere\n"
        "R1\tMODIFY Arg1:T2 Arg2:E1\n",
        encoding="utf-8",
    )
    ann = read_ann(path)
    assert ann.relations == {"R1": ("MODIFY", "T2", "T1")} and not ann.problems


def test_event_arguments_are_counted_and_warned_about(tmp_path: Path, capsys):
    """An event corpus (SDoH's E lines) scored relation F 0.00 from 0 gold relations with no word: the official
    rules score T and R lines only. The E lines' arguments are counted, and score-brat says so."""
    concepts = "T1\tTobacco 0 4\tx\nT2\tStatusTime 10 17\ty\n"
    gold = concepts + "E1\tTobacco:T1 Status:T2\nE2\tTobacco:T1\n"
    scores = pair(tmp_path, gold, concepts)
    assert scores["unscored_event_arguments"] == 1 and counts(scores, "relations_strict") == (0, 0, 0)
    assert cli(["score-brat", str(tmp_path / "gold"), str(tmp_path / "system")]) == 0
    assert "the gold files hold 1 event arguments (E lines)" in capsys.readouterr().err
    assert cli(["score-brat", str(tmp_path / "gold"), str(tmp_path / "system"), "--output", str(tmp_path)]) == 2
    assert f"--output {tmp_path} is a folder" in capsys.readouterr().err
