"""The command line: every verb listed and documented; clear errors for bad input."""
import subprocess
import sys

import pytest

from spacy_softprompt.cli import VERBS, main


def test_help_lists_every_verb_with_a_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "spacy_softprompt", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "convert" in out.stdout


def test_render_with_a_missing_pipeline_is_a_clear_error(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nope"), "some text"]) == 1
    assert "cannot load pipeline" in capsys.readouterr().err


def test_experiment_table_and_plot_average_over_seeds(tmp_path):
    from spacy_softprompt.cli.experiment import plot, to_markdown

    results = [
        {"value": 5, "seed": 0, "concepts_strict_f": 0.2, "concepts_lenient_f": 0.4,
         "relations_strict_f": 0.1, "relations_lenient_f": 0.2},
        {"value": 5, "seed": 1, "concepts_strict_f": 0.4, "concepts_lenient_f": 0.6,
         "relations_strict_f": 0.1, "relations_lenient_f": 0.2},
        {"value": 10, "seed": 0, "concepts_strict_f": 0.5, "concepts_lenient_f": 0.7,
         "relations_strict_f": 0.3, "relations_lenient_f": 0.4},
    ]
    table = to_markdown("fewshot", results)
    # mean of 20 and 40 is 30; sample sd of (20, 40) is 14.1
    assert "| 5 | 2 | 30.0 ± 14.1 | 50.0 ± 14.1 | 10.0 ± 0.0 | 20.0 ± 0.0 |" in table
    assert "| 10 | 1 | 50.0 ± 0.0 |" in table
    plot("fewshot", results, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_experiment_missing_inputs_are_clear_errors(tmp_path, capsys):
    code = main(["experiment", "fewshot", "--config", str(tmp_path / "x.cfg"), "--train", "a", "--dev", "b",
                 "--test", "c", "--output", str(tmp_path)])
    assert code == 1 and "not found" in capsys.readouterr().err
