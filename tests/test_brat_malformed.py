"""Malformed brat input, tried systematically (files generated here, never committed).

Each case either converts with the adjustment counted, or is an error naming
file:line and what is wrong; with ``lenient`` the rest of the folder converts and
each problem is reported. Nothing raises from inside the package: the CLI gives
one ``error:`` line and exit code 2.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import pytest
import spacy

import spacy_softprompt  # noqa: F401  (registers the extensions)
from spacy_softprompt.cli import main
from spacy_softprompt.corpora import brat
from spacy_softprompt.corpora.brat import read_brat
from spacy_softprompt.corpora.summary import CorpusFormatError

TEXT = "Aspirin caused a rash."
GOOD = "T1\tDrug 0 7\tAspirin\n"


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def write(folder: Path, name: str, txt: Union[str, bytes, None], ann: Union[str, bytes, None]) -> None:
    """A .txt/.ann pair written byte for byte; None leaves that file out."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, content in ((".txt", txt), (".ann", ann)):
        if content is not None:
            data = content if isinstance(content, bytes) else content.encode("utf-8")
            (folder / f"{name}{suffix}").write_bytes(data)


# (name, .txt, .ann, file holding the problem, line, words of the message)
ERRORS = [
    ("beyond", TEXT, GOOD + "T2\tADE 17 40\trash\n", ".ann", 2, "offset beyond text"),
    ("negative", TEXT, GOOD + "T2\tADE -1 4\trash\n", ".ann", 2, "broken T line"),
    ("reversed", TEXT, GOOD + "T2\tADE 21 17\trash\n", ".ann", 2, "broken T line"),
    ("unknown_r", TEXT, GOOD + "R1\tCause Arg1:T1 Arg2:T9\n", ".ann", 2, "unknown id"),
    ("unknown_e", TEXT, GOOD + "E1\tDrug:T1 Type:T7\n", ".ann", 2, "unknown id"),
    ("unknown_star", TEXT, GOOD + "*\tOVERLAP T1 T5\n", ".ann", 2, "unknown id"),
    ("missing_trigger", TEXT, GOOD + "E1\tDrug:T4\n", ".ann", 2, "unknown id: trigger T4"),
    ("duplicate", TEXT, GOOD + "T1\tADE 17 21\trash\n", ".ann", 2, "duplicate id"),
    ("bad_txt_byte", b"Aspirin\ncaused a \xff rash.", GOOD, ".txt", 2, "not valid UTF-8: byte 0xff"),
    ("bad_ann_byte", TEXT, GOOD.encode() + b"T2\tADE 17 21\tr\xe4sh\n", ".ann", 2, "not valid UTF-8: byte 0xe4"),
    ("space_not_tab", TEXT, GOOD + "T2 ADE 17 21\trash\n", ".ann", 2, "followed by a space, not a tab"),
    ("empty_txt", "", GOOD, ".ann", 1, "offset beyond text"),
    ("empty_role", TEXT, GOOD + "T2\tADE 17 21\trash\nE1\tDrug:T1 :T2\n", ".ann", 3, "broken E line"),
    ("number_role", TEXT, GOOD + "T2\tADE 17 21\trash\nE1\tDrug:T1 2:T2\n", ".ann", 3, "broken E line"),
    ("same_arg_names", TEXT, GOOD + "T2\tADE 17 21\trash\nR1\tCause Arg1:T1 Arg1:T2\n", ".ann", 3,
     "two arguments named Arg1"),
    ("note_unknown", TEXT, GOOD + "#1\tAnnotatorNotes T9\tsome note\n", ".ann", 2, "unknown id: #1 is about T9"),
    ("note_broken", TEXT, GOOD + "#1\tgarbage\n", ".ann", 2, "broken # line"),
    ("norm_unknown", TEXT, GOOD + "N1\tReference T9 UMLS:C123\tfoo\n", ".ann", 2, "unknown id: N1 is about T9"),
    ("ann_only", None, GOOD, ".ann", None, "no .txt beside this .ann"),
]


@pytest.mark.parametrize("name,txt,ann,holder,line,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_error_names_file_line_and_problem(tmp_path, nlp, name, txt, ann, holder, line, message):
    write(tmp_path, name, txt, ann)
    with pytest.raises(CorpusFormatError) as info:
        read_brat(tmp_path / f"{name}.ann", nlp)
    error = info.value
    assert error.path == str(tmp_path / f"{name}{holder}")
    assert error.line == line
    assert message in str(error)
    where = f"{error.path}:{line}: " if line is not None else f"{error.path}: "
    assert str(error).startswith(where)


def test_lenient_reports_the_lines_after_a_text_mismatch(tmp_path, nlp):
    """The broken line after a mismatched T (read as its possible continuation) was lost without a trace."""
    write(tmp_path, "doc", TEXT, "T1\tDrug 0 7\tAspirinX\nR1 Cause Arg1:T1 Arg2:T2\nT2\tADE 17 21\trash\n")
    _, summary = read_brat(tmp_path / "doc.ann", nlp, lenient=True)
    assert [p.split(": ")[1] for p in summary.problems] == ["text mismatch", "broken line"]
    assert summary.problems[1].startswith(f"{tmp_path / 'doc.ann'}:2: ")


def test_lenient_reports_the_lines_after_a_duplicate_id(tmp_path, nlp):
    """A broken line after a duplicate T (held as its possible continuation) was lost without a trace."""
    write(tmp_path, "doc", TEXT, GOOD + "T2\tADE 17 21\trash\nT1\tADE 17 21\trash\nthis is garbage\n")
    _, summary = read_brat(tmp_path / "doc.ann", nlp, lenient=True)
    assert [p.split(": ")[1] for p in summary.problems] == ["duplicate id", "broken line"]
    assert summary.problems[1].startswith(f"{tmp_path / 'doc.ann'}:4: ")


def test_relation_arguments_are_read_by_name(tmp_path, nlp):
    """Arg2 written first made the tail the head, silently; other names are read in order and counted."""
    ann = GOOD + "T2\tADE 17 21\trash\nR1\tCause Arg2:T2 Arg1:T1\nR2\tSame From:T2 To:T1\n"
    write(tmp_path, "doc", TEXT, ann)
    [doc], summary = read_brat(tmp_path / "doc.ann", nlp)
    assert sorted((r.head.text, r.tail.text, r.label) for r in doc._.relations) == [
        ("Aspirin", "rash", "Cause"), ("rash", "Aspirin", "Same")]
    assert summary.adjusted[brat.ARG2_FIRST] == 1 and summary.adjusted[brat.OTHER_ARG_NAMES] == 1


def test_notes_and_normalizations_about_known_ids_are_counted(tmp_path, nlp):
    ann = GOOD + "#1\tAnnotatorNotes T1\tchecked\nN1\tReference T1 RxNorm:1191\tAspirin\n#2\tAnnotatorNotes T1\n"
    write(tmp_path, "doc", TEXT, ann)
    _, summary = read_brat(tmp_path / "doc.ann", nlp)
    assert summary.not_converted == {brat.NOTE: 2, brat.NORMALIZATION: 1} and summary.problems == []


def test_an_equivalence_keeps_its_converted_members(tmp_path, nlp):
    """One member not converted lost the line's every relation, counted once."""
    text = "Aspirin and ibuprofen and naproxen   ."
    ann = ("T1\tDrug 0 7\tAspirin\nT2\tDrug 12 21\tibuprofen\nT3\tDrug 26 34\tnaproxen\nT4\tDrug 35 37\t  \n"
           "*\tOVERLAP T1 T3 T4 T2\n")
    write(tmp_path, "doc", text, ann)
    (doc,), summary = read_brat(tmp_path / "doc.ann", nlp)
    assert [(r.head.text, r.tail.text) for r in doc._.relations] == [("Aspirin", "naproxen"), ("naproxen", "ibuprofen")]
    assert summary.not_converted[brat.argument_not_converted("*")] == 1


def test_messages_say_what_the_line_should_look_like(tmp_path, nlp):
    write(tmp_path, "doc", TEXT, GOOD + "T2 ADE 17 21\trash\n")
    with pytest.raises(CorpusFormatError, match=r"'T2\\tADE 17 21\\trash'"):
        read_brat(tmp_path / "doc.ann", nlp)
    write(tmp_path, "doc", TEXT, GOOD + "T2\tADE 21 17\trash\n")
    with pytest.raises(CorpusFormatError, match=r"T1<TAB>TYPE START END<TAB>TEXT"):
        read_brat(tmp_path / "doc.ann", nlp)
    for line in ("T2 \tADE 17 21\trash\n", "T2  ADE 17 21\trash\n"):  # the fix shown was itself broken
        write(tmp_path, "doc", TEXT, GOOD + line)
        with pytest.raises(CorpusFormatError, match=r"e\.g\. 'T2\\tADE 17 21\\trash'"):
            read_brat(tmp_path / "doc.ann", nlp)


def test_lenient_converts_the_rest_and_reports_each_problem(tmp_path, nlp):
    for name, txt, ann, *_ in ERRORS:
        write(tmp_path, name, txt, ann)
    write(tmp_path, "fine", TEXT, GOOD + "T2\tADE 17 21\trash\n")
    write(tmp_path, "txt_only", TEXT, None)
    docs, summary = read_brat(tmp_path, nlp, lenient=True)
    assert len(summary.problems) == len(ERRORS)
    for name, _, _, holder, line, message in ERRORS:
        where = f"{tmp_path / f'{name}{holder}'}" + (f":{line}: " if line is not None else ": ")
        assert any(p.startswith(where) and message in p for p in summary.problems), name
    assert summary.not_converted[brat.TXT_WITHOUT_ANN] == 1
    by_id = {d._.doc_id: d for d in docs}
    assert "bad_txt_byte" not in by_id and "ann_only" not in by_id
    assert [(s.text, s.label_) for s in by_id["fine"].spans["softprompt"]] == [("Aspirin", "Drug"), ("rash", "ADE")]
    assert [s.text for s in by_id["beyond"].spans["softprompt"]] == ["Aspirin"]  # the rest of a file arrives


@pytest.mark.parametrize(
    "txt,ann,adjusted",
    [
        ("\ufeff" + TEXT, "T1\tDrug 1 8\tAspirin\n", brat.EXPANDED),  # a BOM in the .txt is a character
        (TEXT, "\ufeff" + GOOD, brat.ANN_BOM),  # in the .ann it is not an annotation
        (TEXT, "", None),  # empty .ann: a document without annotations
        ("", "", None),  # empty pair
        ("Aspirin\x00 caused a rash.", "T1\tDrug 0 7\tAspirin\nT2\tADE 18 22\trash\n", brat.EXPANDED),  # NUL
    ],
)
def test_odd_but_valid_files_convert(tmp_path, nlp, txt, ann, adjusted: Optional[str]):
    write(tmp_path, "doc", txt, ann)
    [doc], summary = read_brat(tmp_path / "doc.ann", nlp)
    assert doc.text == txt and summary.problems == []
    assert summary.adjusted == ({adjusted: 1} if adjusted else {})
    assert len(doc.spans["softprompt"]) == ann.count("\n")


def test_one_megabyte_single_line_note(tmp_path, nlp):
    text = "word " * 200_000 + "aspirin"
    write(tmp_path, "big", text, f"T1\tDrug {len(text) - 7} {len(text)}\taspirin\n")
    [doc], summary = read_brat(tmp_path / "big.ann", nlp)
    assert [s.text for s in doc.spans["softprompt"]] == ["aspirin"]


def test_line_break_cases_are_read_as_one_annotation(tmp_path, nlp):
    text = "Pain in the\r\nleft leg.\r\nFever\r\n"
    ann = (
        "T1\tSymptom 0 22\tPain in the\n"  # the text field continues on the next line (\r dropped)
        "left leg.\n"
        "T2\tSymptom 24 30\tFever\n"  # the span ends on the \r of a CRLF
        "T3\tSymptom 0 22\tPain in the left leg.\n"  # a space where the .txt has \r\n
    )
    [doc], summary = read_brat(write_and_path(tmp_path, text, ann), nlp, text_check="strict")
    assert summary.adjusted[brat.TEXT_CONTINUED] == 1
    assert summary.adjusted[brat.TEXT_CR] == 1
    assert summary.adjusted[brat.TEXT_LINE_BREAK] == 1
    assert summary.adjusted[brat.TRIMMED] == 1  # the \r is whitespace of the .txt
    assert sorted(s.text for s in doc.spans["softprompt"]) == ["Fever", "Pain in the\r\nleft leg."]


@pytest.mark.parametrize("check,written", [("offsets", "Pain in teh\nleft leg."), ("tolerant", "Pain in the\nleft leq.")])
def test_a_continued_text_field_is_checked_as_the_text_check_says(tmp_path, nlp, check, written):
    """A text field over two lines ignored --text-check: "offsets" failed on it, "tolerant" refused a small slip."""
    ann = f"T1\tSymptom 0 21\t{written}\nT2\tSymptom 22 27\tFever\n"
    [doc], summary = read_brat(write_and_path(tmp_path, "Pain in the\nleft leg.\nFever\n", ann), nlp, text_check=check)
    assert sorted(s.text for s in doc.spans["softprompt"]) == ["Fever", "Pain in the\nleft leg."]
    assert summary.adjusted[brat.TEXT_DIFFERS] == 1 and summary.problems == []
    with pytest.raises(CorpusFormatError, match=r":1: text mismatch"):  # strict: still a mismatch
        read_brat(tmp_path / "doc.ann", nlp, text_check="strict")


@pytest.mark.parametrize("written", ["Aspirin caused", "Aspirin cuased"])
def test_a_broken_line_after_a_multiline_span_is_not_taken_as_its_text(tmp_path, nlp, written):
    """With --text-check offsets, a broken R line after a T crossing a line break passed as that T's text
    (as many lines as the span crosses), and the relation was lost without an error."""
    ann = f"T2\tADE 15 21\tnausea\nT1\tDrug 0 14\t{written}\nR1 Causes Arg1:T1 Arg2:T2\n"
    with pytest.raises(CorpusFormatError, match=r":3: broken line: the id R1 is followed by a space"):
        read_brat(write_and_path(tmp_path, "Aspirin\ncaused nausea.", ann), nlp, text_check="offsets")


def test_continuation_that_does_not_match_is_a_broken_line(tmp_path, nlp):
    ann = GOOD + "this is not an annotation\n"
    for check in ("strict", "tolerant", "offsets"):  # a span on one line takes no continuation, whatever the check
        with pytest.raises(CorpusFormatError, match=r":2: broken line"):
            read_brat(write_and_path(tmp_path, TEXT, ann), nlp, text_check=check)


def write_and_path(folder: Path, text: str, ann: str) -> Path:
    write(folder, "doc", text, ann)
    return folder / "doc.ann"


def test_cli_gives_one_error_line_not_a_traceback(tmp_path, capsys):
    write(tmp_path / "in", "doc", b"Aspirin \xff", GOOD)
    assert main(["convert", "brat", str(tmp_path / "in"), str(tmp_path / "out.spacy")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{tmp_path / 'in' / 'doc.txt'}:1: not valid UTF-8" in err
    write(tmp_path / "in", "ok", TEXT, GOOD)
    assert main(["convert", "brat", str(tmp_path / "in"), str(tmp_path / "out.spacy"), "--lenient"]) == 0
    out = capsys.readouterr().out
    assert "doc.txt:1: not valid UTF-8" in out
