"""The committed configs are init-config's output, and every generated config passes
spaCy's own `spacy debug config` and `spacy debug data` on converted ADE data."""
from __future__ import annotations

import json

import pytest
import spacy
from click.testing import CliRunner
from spacy.cli import app
from typer.main import get_command

from spacy_softprompt.cli import CLIError, main
from spacy_softprompt.cli.init_config import LEARN_RATE, PRESETS, STOCK, STOCK_PRESETS, STOCK_TEXTCAT, generate

from conftest import ROOT, SHARED_DATA, require_shared

CONFIGS = ROOT / "configs"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_committed_config_is_the_generators_output(preset):
    committed = (CONFIGS / f"{preset}.cfg").read_text(encoding="utf-8")
    assert committed == generate(preset), (
        f"configs/{preset}.cfg differs from `init-config --preset {preset}`: run `make configs` and commit"
    )


def test_choices_reach_the_config(tmp_path):
    out = tmp_path / "my.cfg"
    assert main(["init-config", str(out), "--strategy", "deep", "--no-frozen", "--backbone", "some/model",
                 "--prompt-layer", "3", "--train", "a.spacy", "--dev", "b.spacy", "--max-steps", "77", "--gpu",
                 "--cats-text-pooling", "attention", "--head-lr-scale", "50", "--cats-bag-of-words",
                 "--cats-loss-weight", "100"]) == 0
    config = spacy.util.load_config(out, interpolate=True)  # ${paths.train} resolves
    model = config["components"]["softprompt_ie"]["model"]
    assert (model["strategy"], model["freeze_backbone"], model["backbone"]) == ("deep", False, "some/model")
    assert model["prompt_layer"] == 3 and model["mixed_precision"] is True
    assert model["cats_text_pooling"] == "attention" and model["head_lr_scale"] == 50.0
    assert model["cats_bag_of_words"] is True and "--cats-bag-of-words" in out.read_text().split("[paths]")[0]
    assert config["components"]["softprompt_ie"]["cats_loss_weight"] == 100.0
    assert "--cats-loss-weight 100.0" in out.read_text().split("[paths]")[0]
    assert config["corpora"]["train"]["path"] == "a.spacy" and config["paths"]["dev"] == "b.spacy"
    schedule = config["training"]["optimizer"]["learn_rate"]
    assert config["training"]["max_steps"] == 77 and schedule["total_steps"] == 77
    assert schedule["initial_rate"] == LEARN_RATE[False]
    assert "--gpu-id 0" in out.read_text().split("[paths]")[0]
    frozen = spacy.util.load_config_from_str(generate(strategy="soft"))
    assert frozen["training"]["optimizer"]["learn_rate"]["initial_rate"] == LEARN_RATE[True]


def test_packed_query_choices_reach_the_config_and_its_header(tmp_path, capsys):
    """``--packed`` and the packed query's settings (type parts per corpus, shuffled, cosine) are
    written into the model block, the header's command makes the same file again, and the type part
    settings without ``--packed`` (or on the stock pipeline) are an error."""
    out = tmp_path / "packed.cfg"
    argv = ["init-config", str(out), "--preset", "soft_prompt_frozen", "--packed", "--packed-types", "corpus",
            "--shuffle-types", "--type-scoring", "cosine"]
    assert main(argv) == 0
    model = spacy.util.load_config(out)["components"]["softprompt_ie"]["model"]
    assert (model["packed"], model["packed_types"], model["shuffle_types"], model["type_scoring"]) == (
        True, "corpus", True, "cosine")
    header = next(line for line in out.read_text().splitlines() if line.startswith("# Made by: "))
    command = header[len("# Made by: python -m spacy_softprompt "):].split("  (do not edit")[0].split()
    again = tmp_path / "again.cfg"
    assert command[1] == str(out)
    assert main([command[0], str(again), *command[2:]]) == 0
    assert again.read_text().split("[paths]")[1] == out.read_text().split("[paths]")[1]  # below the header
    defaults = spacy.util.load_config_from_str(generate("soft_prompt_frozen"))["components"]["softprompt_ie"]["model"]
    assert (defaults["packed"], defaults["packed_types"], defaults["shuffle_types"], defaults["type_scoring"]) == (
        False, "all", False, "dot")
    capsys.readouterr()
    for flag in (["--shuffle-types"], ["--packed-types", "corpus"], ["--type-scoring", "cosine"]):
        assert main(["init-config", "-", "--preset", "soft_prompt_frozen", *flag]) == 2
        assert "add --packed" in capsys.readouterr().err
    with pytest.raises(CLIError, match="packed query"):
        generate(STOCK, packed=True)
    with pytest.raises(CLIError, match="packed query"):
        generate(STOCK, packed_types="corpus")
    with pytest.raises(CLIError, match="strategy none already answers every type"):
        generate("finetune", packed=True)


def test_model_block_is_the_factorys_default_config(monkeypatch):
    """A setting the component gains appears in the generated configs with no change here."""
    meta = spacy.blank("en").get_factory_meta("softprompt_ie")
    defaults = meta.default_config
    config = spacy.util.load_config_from_str(generate("hard_prompt"))
    block = config["components"]["softprompt_ie"]
    chosen = {"strategy": "hard", "freeze_backbone": False}
    assert {**defaults["model"], **chosen} == block["model"]
    assert {k: v for k, v in block.items() if k not in ("factory", "model")} == {
        k: v for k, v in defaults.items() if k != "model"}
    patched = {**defaults, "model": {**defaults["model"], "a_new_setting": 7}}
    monkeypatch.setattr(meta, "default_config", patched)
    assert "a_new_setting = 7" in generate("hard_prompt")


def test_query_texts_file_reaches_the_config_or_is_named(tmp_path, capsys):
    """``--query-texts FILE``: its questions land in [components.softprompt_ie.query_texts]; a
    missing, broken or mis-shaped file is one error line naming it, and the stock pipeline refuses it."""
    questions = tmp_path / "questions.json"
    questions.write_text(json.dumps({"current": "Does the patient smoke now?", "past": "Did the patient quit?"}))
    out = tmp_path / "hard.cfg"
    assert main(["init-config", str(out), "--preset", "hard_prompt", "--query-texts", str(questions)]) == 0
    config = spacy.util.load_config(out)
    assert dict(config["components"]["softprompt_ie"]["query_texts"]) == json.loads(questions.read_text())
    assert f"--query-texts {questions}" in out.read_text().splitlines()[1]  # the header's command
    capsys.readouterr()
    broken = tmp_path / "broken.json"
    for content, message in ((b"{", f"{broken}: not JSON (line 1"), (b"\xff\xfe{", f"{broken}: not JSON"),
                             (b'["a"]', f"--query-texts {broken}: expected a JSON object"),
                             (b'{"a": ""}', f"--query-texts {broken}: expected a JSON")):
        broken.write_bytes(content)  # (a file in UTF-16 was a UnicodeDecodeError traceback)
        assert main(["init-config", str(out), "--query-texts", str(broken)]) == 2
        assert message in capsys.readouterr().err
    assert main(["init-config", str(out), "--query-texts", str(tmp_path / "nowhere.json")]) == 2
    assert "nowhere.json: no such file" in capsys.readouterr().err
    assert main(["init-config", str(out), "--preset", "stock_transformer_textcat", "--query-texts", str(questions)]) == 2
    assert "query text" in capsys.readouterr().err


def test_stock_preset_refuses_prompt_choices(capsys):
    with pytest.raises(CLIError, match="no strategy"):
        generate(STOCK, strategy="soft")
    assert main(["init-config", "-", "--preset", STOCK, "--prompt-layer", "2"]) != 0
    assert "error: the stock transformer+ner pipeline has no strategy" in capsys.readouterr().err
    with pytest.raises(CLIError, match="adapter"):
        generate(STOCK, adapter={"@misc": "spacy_softprompt.LoRA.v1"})
    with pytest.raises(CLIError, match="text pooling"):
        generate(STOCK, cats_text_pooling="attention")
    with pytest.raises(CLIError, match="bag of words"):
        generate(STOCK_TEXTCAT, cats_bag_of_words=True)
    with pytest.raises(CLIError, match="head learning rate"):
        generate(STOCK, head_lr_scale=50.0)
    with pytest.raises(CLIError, match="class loss weight"):
        generate(STOCK_TEXTCAT, cats_loss_weight=100.0)
    with pytest.raises(CLIError, match="--cats-loss-weight must be above 0"):
        generate("finetune", cats_loss_weight=0.0)
    with pytest.raises(CLIError, match="--head-lr-scale must be above 0"):
        generate("finetune", head_lr_scale=0.0)


def test_a_preset_with_other_choices_names_its_own_file(tmp_path):
    """The header's commands name the file written, not configs/<preset>.cfg, once a choice differs."""
    out = tmp_path / "lora_attention.cfg"
    assert main(["init-config", str(out), "--preset", "lora_frozen", "--cats-text-pooling", "attention"]) == 0
    header = out.read_text().split("[paths]")[0]
    assert f"init-config {out} --preset lora_frozen --cats-text-pooling attention" in header
    assert f"spacy train {out}" in header and "configs/lora_frozen.cfg" not in header
    assert "init-config configs/lora_frozen.cfg --preset lora_frozen  (do not edit" in generate("lora_frozen", output=out)


def test_stock_textcat_preset_is_spacys_textcat_on_the_transformer():
    """The classification baseline: exclusive textcat, its tok2vec the transformer's listener, the
    transformer block and training settings those of the stock ner baseline, selected on cats_score."""
    config = spacy.util.load_config_from_str(generate(STOCK_TEXTCAT))
    ner = spacy.util.load_config_from_str(generate(STOCK))
    assert config["nlp"]["pipeline"] == ["transformer", "textcat"]
    model = config["components"]["textcat"]["model"]
    assert model["@architectures"] == "spacy.TextCatEnsemble.v2" and model["linear_model"]["exclusive_classes"]
    assert model["tok2vec"] == ner["components"]["ner"]["model"]["tok2vec"]
    assert config["components"]["transformer"] == ner["components"]["transformer"]
    assert config["training"]["score_weights"]["cats_score"] == 1.0
    assert {k: v for k, v in config["training"].items() if k != "score_weights"} == {
        k: v for k, v in ner["training"].items() if k != "score_weights"}
    with pytest.raises(CLIError, match="transformer\\+textcat pipeline has no strategy"):
        generate(STOCK_TEXTCAT, strategy="soft")
    with pytest.raises(CLIError, match="stock_head must be one of ner, textcat, spancat"):
        generate(STOCK, stock_head="tagger")


def test_textcat_model_puts_one_half_of_the_stock_ensemble_alone(tmp_path, capsys):
    """``--textcat-model``: the stock textcat with its ensemble's transformer half alone (parametric
    attention over the same listener) or its bag-of-words half alone (the same linear model, no
    transformer, spaCy's bag-of-words learning rate), everything else the preset's; the bag of words
    trains and classifies without any backbone, and cats-curve sets none for it."""
    from spacy.training import Example

    from spacy_softprompt.cli.init_config import BOW_LEARN_RATE
    from spacy_softprompt.cli.runs import backbone_settings

    ensemble = spacy.util.load_config_from_str(generate(STOCK_TEXTCAT))
    attention = spacy.util.load_config_from_str(generate(STOCK_TEXTCAT, textcat_model="attention"))
    bow = spacy.util.load_config_from_str(generate(STOCK_TEXTCAT, textcat_model="bow"))
    halves = ensemble["components"]["textcat"].pop("model")
    model = attention["components"]["textcat"].pop("model")
    assert model == {"@architectures": "spacy.TextCatParametricAttention.v1", "exclusive_classes": True,
                     "nO": None, "tok2vec": halves["tok2vec"]}
    assert attention == ensemble
    assert bow["nlp"]["pipeline"] == ["textcat"] and "transformer" not in bow["components"]
    assert bow["components"]["textcat"].pop("model") == halves["linear_model"]
    assert bow["components"]["textcat"] == ensemble["components"]["textcat"]
    assert bow["training"]["optimizer"]["learn_rate"]["initial_rate"] == BOW_LEARN_RATE
    out = tmp_path / "bow.cfg"
    assert main(["init-config", str(out), "--preset", STOCK_TEXTCAT, "--textcat-model", "bow"]) == 0
    header = out.read_text()
    made_by = next(line for line in header.splitlines() if line.startswith("# Made by:"))
    assert made_by.endswith(f"--preset {STOCK_TEXTCAT} --textcat-model bow  (do not edit: regenerate)")
    comment = " ".join(line[2:] for line in header.splitlines() if line.startswith("# "))
    assert "the ensemble's bag-of-words half alone" in comment
    config = spacy.util.load_config(out)
    assert backbone_settings(config, "default") == {}
    stray = spacy.util.load_config_from_str(generate(STOCK_TEXTCAT))  # a transformer textcat whose transformer
    stray["components"].pop("transformer")  # is missing: --backbone would be lost, so it is an error
    with pytest.raises(CLIError, match="neither a softprompt_ie nor a transformer"):
        backbone_settings(stray, "default")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    texts = {"Patient smokes daily.": "current", "Denies tobacco.": "never", "Quit smoking in 2001.": "past"}
    examples = []
    for text, status in texts.items():
        doc = nlp.make_doc(text)
        examples.append(Example.from_dict(doc, {"cats": {c: float(c == status) for c in texts.values()}}))
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer)
    assert set(nlp("Patient smokes daily.").cats) == set(texts.values())
    capsys.readouterr()
    assert main(["init-config", "-", "--preset", "finetune", "--textcat-model", "bow"]) == 2
    assert "--textcat-model is a choice of the stock textcat" in capsys.readouterr().err


def test_stock_spancat_preset_reads_the_concepts_where_the_corpora_keep_them():
    """The overlapping-concepts baseline: spancat on the transformer's listener, gold and predictions
    in doc.spans['softprompt'] (where convert writes concepts and evaluate reads them), candidates
    of 1 to 12 tokens (softprompt_ie's max_span_width), selected on that key's F1."""
    from spacy_softprompt.cli.init_config import STOCK_SPANCAT

    config = spacy.util.load_config_from_str(generate(STOCK_SPANCAT))
    ner = spacy.util.load_config_from_str(generate(STOCK))
    assert config["nlp"]["pipeline"] == ["transformer", "spancat"]
    spancat = config["components"]["spancat"]
    assert spancat["spans_key"] == "softprompt"
    assert spancat["suggester"] == {"@misc": "spacy.ngram_range_suggester.v1", "min_size": 1, "max_size": 12}
    assert spancat["model"]["tok2vec"] == ner["components"]["ner"]["model"]["tok2vec"]
    assert dict(config["training"]["score_weights"]) == {
        "spans_sc_f": 0.0, "spans_sc_p": 0.0, "spans_sc_r": 0.0,
        "spans_softprompt_f": 1.0, "spans_softprompt_p": 0.0, "spans_softprompt_r": 0.0}


def test_lora_frozen_is_the_lora_system_that_bench_measured(tmp_path):
    """docs/peft.md's "LoRA alone" row trained soft_prompt_frozen with bench's overrides; the
    preset holds the same components and training settings (only the data and steps differ)."""
    from spacy_softprompt.cli.bench import PEFT_SYSTEMS
    from spacy_softprompt.cli.runs import base_config, write_run_config

    (lora,) = [system for system in PEFT_SYSTEMS if system.run == "lora"]
    overrides = {f"components.softprompt_ie.model.{key}": value for key, value in lora.model}
    overrides["components.softprompt_ie.model.prompt_layer"] = 4  # bench's --prompt-layer default
    measured = spacy.util.load_config(write_run_config(base_config(lora.config), overrides, tmp_path / "bench.cfg"))
    preset = spacy.util.load_config_from_str(generate("lora_frozen"))
    assert preset["components"] == measured["components"] and preset["training"] == measured["training"]
    model = preset["components"]["softprompt_ie"]["model"]
    assert (model["strategy"], model["freeze_backbone"], model["prompt_layer"]) == ("none", True, 4)
    assert model["adapter"] == {"@misc": "spacy_softprompt.LoRA.v1", "r": 8, "alpha": 16}
    assert preset["training"]["optimizer"]["learn_rate"]["initial_rate"] == LEARN_RATE[True]


def test_lora_frozen_trains_only_lora_marker_and_head(tiny_bert, toy_docs):
    """The demo's config: a step moves LoRA, trigger marker and span head, never the backbone."""
    import torch
    from spacy.training import Example

    config = spacy.util.load_config_from_str(generate("lora_frozen"))
    config["components"]["softprompt_ie"]["model"].update(backbone=tiny_bert, prompt_layer=1)  # 2 layers
    torch.manual_seed(0)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in toy_docs]
    optimizer = nlp.initialize(lambda: examples)
    network = nlp.get_pipe("softprompt_ie").network
    trainable = {name: param.detach().clone() for name, param in network.named_parameters() if param.requires_grad}
    backbone = {name for name in trainable if name.startswith("backbone.")}
    assert backbone and all(".lora_" in name for name in backbone)
    assert {name.split(".")[0] for name in trainable} == {"backbone", "trigger_marker", "head"}  # no prompts
    base = {k: v.clone() for k, v in network.backbone_state().items()}
    optimizer.learn_rate = LEARN_RATE[True]  # the schedule's warmup starts at 0; spacy train steps it
    nlp.update(examples, sgd=optimizer)
    after = dict(network.named_parameters())
    assert all(not torch.equal(trainable[name], after[name]) for name in trainable if ".lora_B." in name)
    assert not torch.equal(trainable["trigger_marker"], after["trigger_marker"])
    assert all(torch.equal(base[k], v) for k, v in network.backbone_state().items())


@pytest.fixture(scope="module")
def ade_subset(tmp_path_factory):
    """Train and dev files converted by the `convert` verb from a few PMIDs of each split
    (over 100 training sentences, so `debug data` warns about size instead of failing)."""
    ade = require_shared(SHARED_DATA / "ade-corpus-v2")
    folder = tmp_path_factory.mktemp("ade")
    splits = json.loads((ade / "splits.json").read_text())
    (folder / "splits.json").write_text(json.dumps({"train": splits["train"][:60], "dev": splits["dev"][:10]}))
    for split in ("train", "dev"):
        code = main(["convert", "ade", str(ade), str(folder / f"{split}.spacy"), "--split", split,
                     "--splits", str(folder / "splits.json")])
        assert code == 0
    return folder


@pytest.fixture(scope="module")
def smoking_data(tmp_path_factory):
    """SDoH train and dev with the smoking status in doc.cats (`convert brat --cats-from-status`):
    the textcat baseline's data (ADE has no doc.cats)."""
    sdoh = require_shared(SHARED_DATA / "sdoh-mtsamples")
    folder = tmp_path_factory.mktemp("sdoh-smoking")
    for split in ("train", "dev"):
        assert main(["convert", "brat", str(sdoh), str(folder / f"{split}.spacy"), "--split", split,
                     "--cats-from-status", "Tobacco"]) == 0
    return folder


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    assert main(["init-config", str(folder), "--preset", "all"]) == 0
    return folder


def spacy_cli(*args: str):
    """`python -m spacy ...` run in this process (the same click command; one import of torch
    for all configs instead of one per call)."""
    return CliRunner().invoke(get_command(app), list(args), prog_name="python -m spacy", catch_exceptions=False)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_generated_config_passes_spacy_debug(preset, generated, request, default_backbone_path):
    data = request.getfixturevalue("smoking_data" if preset == STOCK_TEXTCAT else "ade_subset")
    paths = ["--paths.train", str(data / "train.spacy"), "--paths.dev", str(data / "dev.spacy")]
    if preset in STOCK_PRESETS:  # spacy-transformers looks a hub name up online: give it the offline copy
        paths += ["--components.transformer.model.name", default_backbone_path]
    config = str(generated / f"{preset}.cfg")
    result = spacy_cli("debug", "config", config, *paths)
    assert result.exit_code == 0, result.output
    assert "Config is valid" in result.output
    result = spacy_cli("debug", "data", config, *paths)
    assert result.exit_code == 0, result.output
    assert "Corpus is loadable" in result.output and "training docs" in result.output
    assert "not a valid integer" not in result.output


def test_the_header_says_what_was_made_not_the_preset_it_started_from(tmp_path):
    """--preset soft_prompt_frozen --no-frozen --strategy deep once wrote "soft prompts with a frozen backbone" over
    a deep, unfrozen config; a preset with its kind of model kept keeps its own words."""
    def first_line(*argv):
        out = tmp_path / "c.cfg"
        assert main(["init-config", str(out), *argv]) == 0
        return out.read_text().splitlines()[0]

    assert first_line("--preset", "soft_prompt_frozen", "--no-frozen", "--strategy", "deep") == (
        "# softprompt_ie, strategy 'deep', backbone unfrozen.")
    assert first_line("--preset", "lora_frozen", "--no-frozen") == (
        "# softprompt_ie, strategy 'none', a LoRA adapter, backbone unfrozen.")
    assert "frozen backbone" in first_line("--preset", "soft_prompt_frozen", "--max-steps", "10")


def test_every_project_command_of_the_package_parses():
    """Each `python -m spacy_softprompt VERB ...` line of project.yml, with its default vars, is what the verb
    takes: a flag renamed or removed in the code fails here, not in the middle of a `spacy project run`."""
    from conftest import project, verb_args

    lines = [(command["name"], line) for command in project()["commands"].values()
             for line in command.get("script", []) if line.startswith("python -m spacy_softprompt ")]
    assert len(lines) > 40
    for name, line in lines:
        try:
            verb_args(line)
        except SystemExit:
            pytest.fail(f"project.yml command {name!r}: {line!r} does not parse")


def test_all_presets_with_options_are_checked_before_one_is_written(tmp_path, capsys):
    """--preset all with an option a preset refuses wrote the presets before it and stopped; with options each
    header named config.cfg (the same file and output folder for all)."""
    refused = tmp_path / "refused"
    assert main(["init-config", str(refused), "--preset", "all", "--strategy", "hard"]) == 2
    assert "no strategy" in capsys.readouterr().err and not refused.exists()
    assert main(["init-config", str(tmp_path / "set"), "--preset", "all", "--max-steps", "7"]) == 0
    for preset in PRESETS:
        path = tmp_path / "set" / f"{preset}.cfg"
        made_by = next(line for line in path.read_text().splitlines() if line.startswith("# Made by:"))
        assert f"init-config {path} --preset {preset} --max-steps 7" in made_by
