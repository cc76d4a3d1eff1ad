"""Shared fixtures: tiny random backbones built from configs (never downloaded),
the offline default backbone, and small annotated Docs."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import spacy

import spacy_softprompt  # noqa: F401  (registers extensions)
from spacy_softprompt import Relation, set_concepts, set_relations

# Tests never reach for a model hub: everything is built here or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# `make test` runs the suite in two pytest-xdist workers, one per core: each worker (and the
# training and scoring processes its tests start) computes with one thread, so two workers do
# not fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items):
    """Files by their number of ``slow`` tests, most first; each file's tests keep their order.
    ``make test`` hands whole files to its two workers in this order (``--dist loadfile
    --no-loadscope-reorder``): started last, the long files left one worker running them alone
    for minutes while the other idled."""
    slow_tests = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow_tests[item.path])


def project(overrides=None):
    """project.yml as ``spacy project run`` reads it (``overrides``: ``{"vars.x": value}``), its
    commands keyed by name."""
    from spacy.cli.project.run import load_project_config

    config = load_project_config(ROOT, overrides=overrides or {})
    return {**config, "commands": {command["name"]: command for command in config["commands"]}}


def verb_args(line: str):
    """A project command's ``python -m spacy_softprompt VERB ...`` line, parsed as the verb's arguments."""
    import shlex

    from spacy_softprompt.cli import build_parser

    words = shlex.split(line)
    assert words[:3] == ["python", "-m", "spacy_softprompt"]
    return build_parser().parse_args(words[3:])


def check_made_configs(lines, tmp_path, setting, made_value, committed_value):
    """Run a project command's ``python -m spacy_softprompt init-config OUT --preset P ...`` lines
    into ``tmp_path`` and check that each config differs from the committed configs/<P>.cfg only
    in the model ``setting`` (``made_value`` there, ``committed_value`` in the preset). Returns
    the (OUT, P) of each line."""
    import shlex

    from spacy_softprompt.cli import main

    written = []
    for line in lines:
        words = shlex.split(line)
        assert words[:4] == ["python", "-m", "spacy_softprompt", "init-config"]
        out = tmp_path / Path(words[4]).name
        assert main(["init-config", str(out), *words[5:]]) == 0
        preset = words[words.index("--preset") + 1]
        made = spacy.util.load_config(out)["components"]["softprompt_ie"]
        committed = spacy.util.load_config(ROOT / "configs" / f"{preset}.cfg")["components"]["softprompt_ie"]
        assert made["model"].pop(setting) == made_value and committed["model"].pop(setting) == committed_value
        assert made == committed
        written.append((words[4], preset))
    return written


def require_shared(path: Path) -> Path:
    """The shared corpora live outside the project: a test that needs one skips without
    it, except under CI (``CI`` set, as ``.ci/run`` does), where that is a failure."""
    if not path.exists():
        message = f"{path} not found (the shared corpora live outside the project)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI runs with ../shared beside the clone")
        pytest.skip(message)
    return path

TEXTS = [
    ("Aspirin caused severe nausea in the patient.", [("Aspirin", "Drug"), ("severe nausea", "ADE")]),
    ("She took 50 mg of ibuprofen and developed a rash.", [("50 mg", "Dose"), ("ibuprofen", "Drug"), ("rash", "ADE")]),
    ("No complaints were reported after metformin.", [("metformin", "Drug")]),
    ("Warfarin led to bleeding and headache.", [("Warfarin", "Drug"), ("bleeding", "ADE"), ("headache", "ADE")]),
]
RELATIONS = {
    0: [("Aspirin", "Drug-AE", "severe nausea")],
    1: [("ibuprofen", "Drug-AE", "rash"), ("ibuprofen", "Drug-Dose", "50 mg")],
    3: [("Warfarin", "Drug-AE", "bleeding"), ("Warfarin", "Drug-AE", "headache")],
}


def annotate(nlp, text, mentions, relations=()):
    """A Doc with the given (mention, label) concepts and (head, label, tail) relations."""
    doc = nlp.make_doc(text)
    spans = {}
    for mention, label in mentions:
        start = text.index(mention)
        spans[mention] = doc.char_span(start, start + len(mention), label=label)
    set_concepts(doc, list(spans.values()))
    set_relations(doc, [Relation(spans[h], spans[t], label) for h, label, t in relations])
    return doc


def fit_pipeline(gold_docs, steps, learn_rate=0.01, **config):
    """A blank-English pipeline with softprompt_ie (``config``) trained ``steps`` times on ``gold_docs``."""
    from spacy.training import Example

    nlp = spacy.blank("en")
    nlp.add_pipe("softprompt_ie", config=config)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in gold_docs]
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = learn_rate
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return nlp


@pytest.fixture
def blank_nlp():
    return spacy.blank("en")


@pytest.fixture
def toy_docs(blank_nlp):
    return [annotate(blank_nlp, t, m, RELATIONS.get(i, ())) for i, (t, m) in enumerate(TEXTS)]


@pytest.fixture(scope="session")
def default_backbone_path() -> str:
    from spacy_softprompt.backbone import offline_default_path

    return str(offline_default_path())


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, default_backbone_path) -> str:
    """A 2-layer, 32-wide random BERT with the default backbone's WordPiece tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_bert")
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256,
    )
    BertModel(config).save_pretrained(path, safe_serialization=True)
    AutoTokenizer.from_pretrained(default_backbone_path).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> str:
    """A 2-layer random GPT-2 (decoder) with a small byte-level BPE trained on the test texts."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_gpt2")
    bpe = ByteLevelBPETokenizer()
    corpus = [t for t, _ in TEXTS] * 20 + ["The patient was given a new drug and felt well."] * 5
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.save_pretrained(path)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256)
    GPT2Model(config).save_pretrained(path, safe_serialization=True)
    return str(path)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, tiny_gpt2) -> str:
    """A 2-layer random Llama-style decoder (rotary positions, RMSNorm) with the tiny GPT-2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    tokenizer.save_pretrained(path)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256)
    LlamaModel(config).save_pretrained(path, safe_serialization=True)
    return str(path)
