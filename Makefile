# Everything a fresh clone needs: `make demo` (train + evaluate on the offline
# default backbone) and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch (kept on this machine's disk); on a GPU machine use
# `make TORCH_SPEC=torch` or install your CUDA build into .venv first.
TORCH_SPEC ?= torch==2.13.0
SHARED_DATA ?= ../shared/data

.PHONY: install test assets demo clean configs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,medspacy,plots]"
	touch $@

install: $(VENV)/.installed

# Copies the public corpora into assets/ when ../shared/data exists (no internet
# here); elsewhere `spacy project assets` downloads them from their public URLs.
assets:
	@if [ -d "$(SHARED_DATA)" ]; then \
		mkdir -p assets; \
		for corpus in ade-corpus-v2 ade-spert-splits sdoh-mtsamples maccrobat; do \
			[ -d assets/$$corpus ] || cp -r "$(SHARED_DATA)/$$corpus" assets/$$corpus; \
		done; \
	fi
	@test -d assets/ade-corpus-v2 || (echo "assets/ade-corpus-v2 missing: run 'spacy project assets' (needs internet) or put ../shared/data beside this clone"; exit 1)

test: install
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

# The main job: convert ADE corpus v2, train the best frozen-backbone configuration of
# docs/peft.md (configs/lora_frozen.cfg: LoRA, no prompts; 740 steps, 9 to 15 minutes on
# 2 cores) on the offline default backbone, print strict/lenient test scores, annotate an
# example. Pass project variables through, e.g. make demo VARS="--vars.strategy finetune"
# (the best unfrozen configuration).
demo: install assets
	$(PY) -m spacy project run all . $(VARS)

# The committed configs/*.cfg are init-config's output (tests/test_configs.py fails when they
# drift): regenerate them after a change to the generator or to the component's defaults.
configs: install
	$(PY) -m spacy_softprompt init-config configs --preset all

clean:
	rm -rf corpus training metrics
