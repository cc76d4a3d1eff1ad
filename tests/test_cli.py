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
