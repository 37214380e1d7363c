# Two environments, never mixed (see docs/reference.md "Layout"):
#   .venv        control plane: Airflow 3 + cncf-kubernetes + amazon providers (requirements.lock)
#   .venv-steps  workload: the model_steps package with every step's extra (images/steps)
# Every install is keyed on the hash of the files that define it (stamp files in .stamps/), so a
# second `make test` starts at once and a changed lock reinstalls only its own venv.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
STAMPS := .stamps
CP_VENV := .venv
STEPS_VENV := .venv-steps
CP_PY := $(CP_VENV)/bin/python
STEPS_PY := $(STEPS_VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null || echo .tools/uv/bin/uv)

hash = $(shell cat $(1) | sha256sum | cut -c1-16)
# Installs write each package's bytecode (.pyc) once. Without it every process compiles the modules
# it imports, and never keeps them where PYTHONDONTWRITEBYTECODE is set (it is on this project's
# machines): a TensorFlow import took 5.5-6.2 s instead of 2.2-2.3 s, Great Expectations 5.7 s
# instead of 3.9-4.3 s, in every step process. uv compiles the whole site-packages (~35 s for both
# venvs on 2 cores). The flag is part of the stamps' names, so a venv set up without it is redone.
UV_INSTALL := pip install -q --compile-bytecode
INSTALL_KEY := pyc
CP_STAMP := $(STAMPS)/control-plane-$(call hash,requirements.lock)-$(INSTALL_KEY)
# Model packages (models/<name>/, one pyproject each) are installed editable into the workload venv.
MODEL_DIRS := $(sort $(dir $(wildcard models/*/pyproject.toml)))
# A model's extra requirements (its pyproject's dependencies beyond the platform's packages) are
# installed from its hashed lock (models/<name>/requirements.lock, `make lock`): the same file its
# own step images install (images/model/Dockerfile), so the local run sees the image's packages.
MODEL_LOCKS := $(sort $(wildcard models/*/requirements.lock))
CONTRACT_DIR := plugins/mlplatform_contract
STEPS_STAMP := $(STAMPS)/steps-$(call hash,images/steps/requirements.lock images/steps/pyproject.toml $(CONTRACT_DIR)/pyproject.toml $(addsuffix pyproject.toml,$(MODEL_DIRS)) $(MODEL_LOCKS))-$(INSTALL_KEY)

export AIRFLOW_HOME ?= $(CURDIR)/var/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PYTHONPATH := $(CURDIR)/plugins

.PHONY: help setup run test test-fast lint format bench airflow lock clean new-model suite mlflow-ui \
	campaigns

include make/delivery.mk
include make/apt-tools.mk
include make/monitoring.mk

help:
	@echo "make run     set up, then run the example pipeline end to end on this machine"
	@echo "make test    set up, then run lint and every test (phases timed against ci/test-budget.json)"
	@echo "make test-fast   lint + the tests not marked slow: the inner loop, ~70 s"
	@echo "make setup   create/refresh .venv (Airflow) and .venv-steps (workload); idempotent"
	@echo "make lint    ruff check + format check + import-linter contracts (pyproject.toml)"
	@echo "make bench   benchmarks (tables printed, JSON in benchmarks/results/)"
	@echo "make airflow Airflow UI on http://localhost:8080: the project's DAGs on the embedded platform"
	@echo "make lock    re-resolve requirements.lock, images/steps/requirements.lock and the image locks"
	@echo "make new-model NAME=<name> [TASK=regression] [FRAMEWORK=lightgbm|xgboost|pytorch]   scaffold dags/<name>.py + models/<name>/"
	@echo "make run MODEL=<name> [CUSTOMER=<id>] [TUNE=1]  run one model (one customer) end to end"
	@echo "make suite MODEL=<name>   rewrite the suite's part derived from the model's declarations"
	@echo "make mlflow-ui   the MLflow UI on what the last make run kept (models, reports; scores in var/run/services/s3)"
	@echo "make campaigns [CAMPAIGNS=8] [REWARD=click]  simulated campaigns through publish and monitor: the bandit learning, regret, OPE"

.tools/uv/bin/uv:
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/pip install -q uv==$(UV_VERSION)

$(CP_STAMP): requirements.lock | $(UV)
	rm -f $(STAMPS)/control-plane-*
	$(UV) venv -q --allow-existing -p $(PYTHON) $(CP_VENV)
	VIRTUAL_ENV=$(CP_VENV) $(UV) $(UV_INSTALL) -r requirements.lock
	mkdir -p $(STAMPS) && touch $@

# Horovod 0.28.1 compiles against the TensorFlow already in the venv (no build isolation): ~4 minutes
# on 2 cores, and uv rebuilds it for every new venv (a no-build-isolation build is not cached), so a
# fresh clone paid it again each time. It is built once into a wheelhouse outside the checkout,
# keyed on Horovod, TensorFlow and Python versions, like a package cache; every later venv installs
# that wheel in a second. HOROVOD_WHEELHOUSE= a path of your choice; delete it to rebuild.
HOROVOD_VERSION := 0.28.1
TF_VERSION := $(shell sed -n 's/^tensorflow-cpu==//p' images/steps/requirements.lock)
HOROVOD_WHEELHOUSE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mlops-platform/wheels
HOROVOD_WHEELS := $(HOROVOD_WHEELHOUSE)/horovod-$(HOROVOD_VERSION)-tf$(TF_VERSION)-py311
HOROVOD_BUILD_ENV := HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=-j2

$(STEPS_STAMP): images/steps/requirements.lock images/steps/pyproject.toml $(CONTRACT_DIR)/pyproject.toml $(addsuffix pyproject.toml,$(MODEL_DIRS)) $(MODEL_LOCKS) | $(UV)
	rm -f $(STAMPS)/steps-*
	$(UV) venv -q --allow-existing -p $(PYTHON) $(STEPS_VENV)
	VIRTUAL_ENV=$(STEPS_VENV) $(UV) $(UV_INSTALL) -r images/steps/requirements.lock
	$(if $(MODEL_LOCKS),VIRTUAL_ENV=$(STEPS_VENV) $(UV) pip install -q --no-deps $(addprefix -r ,$(MODEL_LOCKS)))
	VIRTUAL_ENV=$(STEPS_VENV) $(UV) pip install -q --no-deps -e $(CONTRACT_DIR) -e images/steps \
		$(addprefix -e ,$(MODEL_DIRS))
	@if ! ls $(HOROVOD_WHEELS)/horovod-*.whl >/dev/null 2>&1; then \
		echo "building horovod $(HOROVOD_VERSION) against tensorflow $(TF_VERSION) (once, ~4 min)"; \
		VIRTUAL_ENV=$(STEPS_VENV) $(UV) pip install -q pip==25.0.1; \
		rm -rf $(HOROVOD_WHEELS).partial && mkdir -p $(HOROVOD_WHEELS).partial; \
		$(HOROVOD_BUILD_ENV) $(STEPS_PY) -m pip wheel -q --no-build-isolation --no-deps \
			--no-cache-dir -w $(HOROVOD_WHEELS).partial horovod==$(HOROVOD_VERSION); \
		rm -rf $(HOROVOD_WHEELS) && mv $(HOROVOD_WHEELS).partial $(HOROVOD_WHEELS); \
	fi
	VIRTUAL_ENV=$(STEPS_VENV) $(UV) $(UV_INSTALL) $(HOROVOD_WHEELS)/horovod-*.whl
	$(STEPS_PY) -c "import horovod.tensorflow as hvd; hvd.init(); assert hvd.gloo_built()"
	mkdir -p $(STAMPS) && touch $@

# The local Spark driver's class archive (JVM class-data sharing, model_steps/spark_config.py's
# CLASS_ARCHIVE: about half of a session's start), written into the workload venv once per
# pyspark lock and JDK (~35 s); the JVM itself skips an archive that no longer matches.
JAVA_VERSION := $(shell java -version 2>&1 | head -1)
SPARK_CLASSES_STAMP := $(STAMPS)/spark-classes-$(shell echo '$(JAVA_VERSION)' | cat - images/steps/requirements.lock | sha256sum | cut -c1-16)

$(SPARK_CLASSES_STAMP): $(STEPS_STAMP)
	rm -f $(STAMPS)/spark-classes-*
	PYTHONPATH= $(STEPS_PY) -m model_steps.spark_config --write-class-archive 2>&1 | grep -v WARN
	mkdir -p $(STAMPS) && touch $@

setup: $(CP_STAMP) $(STEPS_STAMP) $(SPARK_CLASSES_STAMP)

lock: | $(UV)
	$(UV) pip compile -q --python-version 3.11 requirements.txt requirements-dev.txt -o requirements.lock
	$(UV) pip compile -q --python-version 3.11 --all-extras images/steps/pyproject.toml \
		images/steps/requirements-dev.txt -o images/steps/requirements.lock
	$(PYTHON) tools/lock_images.py --uv $(UV)

lint: $(CP_STAMP)
	$(CP_VENV)/bin/ruff check .
	$(CP_VENV)/bin/ruff format --check .
	PYTHONPATH=plugins:images/steps $(CP_VENV)/bin/lint-imports --no-cache --no-logo

format: $(CP_STAMP)
	$(CP_VENV)/bin/ruff format .
	$(CP_VENV)/bin/ruff check --fix .

# `make test` runs its phases one after another, each timed by tools/test_phases.py (wall time, exit
# code, test counts, test time per folder), and ends with a table of them against ci/test-budget.json
# (a WARNING for a phase 20% over its figure). A failing test phase does not stop the later ones; the
# run exits non-zero. Each pytest phase runs on TEST_WORKERS processes (pytest-xdist): a module's
# tests stay on one worker, so do the modules that share a session's run (tests/conftest.py), and
# the longest groups start first. TEST_WORKERS=0 runs in one process (docs/testing.md).
# Every model package's own tests (models/<name>/tests) run with the workload's.
MODEL_TESTS := $(wildcard models/*/tests)
TEST_TIMES := var/test-times
TEST_WORKERS ?= 2
PHASE = $(PYTHON) tools/test_phases.py run
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder)
# pytest's options every phase shares: the 25 slowest tests, and the JUnit file the table counts
pytest_opts = --durations=25 --durations-min=1 --junitxml=$(TEST_TIMES)/$(1).xml
CP_PYTEST := $(CP_VENV)/bin/pytest
STEPS_PYTEST := env PYTHONPATH= $(STEPS_VENV)/bin/pytest
TOOLS := setup delivery-tools apt-tools monitoring-tools

test:
	@$(PYTHON) tools/test_phases.py reset
	@$(PHASE) installs -- $(MAKE) -s --no-print-directory $(TOOLS) \
		|| { $(PYTHON) tools/test_phases.py report; exit 1; }
	@failed=0; \
	$(PHASE) lint -- $(MAKE) -s --no-print-directory lint || failed=1; \
	$(PHASE) control-plane -- $(CP_PYTEST) $(XDIST) $(call pytest_opts,control-plane) \
		tests/dags tests/plugins tests/tools tests/delivery tests/scripts || failed=1; \
	$(PHASE) workload -- $(STEPS_PYTEST) $(XDIST) $(call pytest_opts,workload) \
		tests/images tests/embedded $(MODEL_TESTS) || failed=1; \
	$(PYTHON) tools/test_phases.py report; \
	exit $$failed

# The inner loop (docs/testing.md): lint, then the tests not marked `slow` in both environments (unit
# tests, DAG parsing, rendered pods; no Spark JVM, no step process, no Airflow DB, no delivery tool:
# `make check-delivery` runs tests/delivery). Budget: 3 minutes warm.
FAST := -m "not slow" -q
test-fast: $(CP_STAMP) $(STEPS_STAMP)
	@$(PYTHON) tools/test_phases.py reset
	@failed=0; \
	$(PHASE) lint -- $(MAKE) -s --no-print-directory lint || failed=1; \
	$(PHASE) fast-control -- $(CP_PYTEST) $(FAST) $(call pytest_opts,fast-control) \
		tests/dags tests/plugins tests/tools tests/scripts || failed=1; \
	$(PHASE) fast-workload -- $(STEPS_PYTEST) $(FAST) $(call pytest_opts,fast-workload) \
		tests/images tests/embedded $(MODEL_TESTS) || failed=1; \
	$(PYTHON) tools/test_phases.py report --target test-fast; \
	exit $$failed

# MODEL=<name> runs one model's DAGs, CUSTOMER=<id> one customer (default: every example model).
MODEL ?=
CUSTOMER ?=
TUNE ?=
run: setup
	@$(MAKE) -s --no-print-directory monitoring-tools || echo "make run: no Pushgateway here, the steps' metrics are not pushed"
	$(CP_PY) scripts/run_example.py $(if $(MODEL),--model $(MODEL)) $(if $(CUSTOMER),--customer $(CUSTOMER)) \
		$(if $(TUNE),--tune)

# Successive simulated campaigns through publish's and the monitor's own campaign code: the
# allocation moving to each segment's best variant, regret vs uniform and oracle, the OPE table
# (scripts/play_campaigns.py, docs/campaigns.md). A few seconds; not part of `make run`.
CAMPAIGNS ?= 8
CONTACTS ?= 20000
REWARD ?= conversion
campaigns: setup
	PYTHONPATH= $(STEPS_PY) scripts/play_campaigns.py --campaigns $(CAMPAIGNS) --contacts $(CONTACTS) \
		--reward $(REWARD)

NAME ?=
TASK ?= binary_classification
FRAMEWORK ?= keras
new-model: setup
	@test -n "$(NAME)" || { echo "usage: make new-model NAME=<name> [TASK=regression] [FRAMEWORK=lightgbm|xgboost|pytorch]"; exit 2; }
	$(CP_PY) scripts/new_model.py --name $(NAME) --task $(TASK) --framework $(FRAMEWORK)

# The MLflow UI on what the last `make run` kept (var/run/services: the registry's sqlite DB and the
# S3 objects saved when the run stopped), artifacts served from those files. MLFLOW_UI_PORT=5000.
MLFLOW_UI_PORT ?= 5000
KEPT := $(CURDIR)/var/run/services
mlflow-ui: $(STEPS_STAMP)
	@test -f $(KEPT)/mlflow.db || { echo "nothing kept in $(KEPT): run \`make run\` first"; exit 2; }
	@echo "MLflow UI on http://127.0.0.1:$(MLFLOW_UI_PORT) (Ctrl-C stops it)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(STEPS_VENV)/bin/mlflow server \
		--backend-store-uri sqlite:///$(KEPT)/mlflow.db \
		--artifacts-destination $(KEPT)/s3/mlflow-artifacts --host 127.0.0.1 --port $(MLFLOW_UI_PORT)

# Rewrites the part of models/<name>/.../expectations.json derived from the model's declarations
# (columns, types, not-null, label classes and rate); the expectations you added are kept.
suite: $(STEPS_STAMP)
	@test -n "$(MODEL)" || { echo "usage: make suite MODEL=<name>"; exit 2; }
	PYTHONPATH= $(STEPS_PY) -m model_steps.expectations mlmodels.$(MODEL)

# BENCH_ARGS=--quick runs each benchmark at its smallest size (a smoke run, not figures to quote).
BENCH_ARGS ?=
bench: setup
	$(CP_PY) benchmarks/bench_dag_parse.py $(BENCH_ARGS)
	PYTHONPATH= $(STEPS_PY) benchmarks/bench_ingest.py $(BENCH_ARGS)
	PYTHONPATH= $(STEPS_PY) benchmarks/bench_spark_jit.py $(BENCH_ARGS)
	PYTHONPATH= $(STEPS_PY) benchmarks/bench_train.py $(BENCH_ARGS)
	PYTHONPATH= $(STEPS_PY) benchmarks/bench_score.py $(BENCH_ARGS)
	PYTHONPATH= $(STEPS_PY) benchmarks/bench_publish.py $(BENCH_ARGS)
	PYTHONPATH= $(STEPS_PY) benchmarks/bench_monitor.py $(BENCH_ARGS)
	PYTHONPATH= $(STEPS_PY) benchmarks/bench_tune.py $(BENCH_ARGS)
	PYTHONPATH= $(STEPS_PY) benchmarks/bench_bandit.py $(BENCH_ARGS)

# AIRFLOW_ARGS: e.g. --port 8081, --size medium, --schedules (scripts/airflow_local.py --help)
AIRFLOW_ARGS ?=
airflow: setup
	@$(MAKE) -s --no-print-directory monitoring-tools || echo "make airflow: no Pushgateway here, the steps' metrics are not pushed"
	$(CP_PY) scripts/airflow_local.py $(AIRFLOW_ARGS)

clean:
	rm -rf $(CP_VENV) $(STEPS_VENV) $(DELIVERY_VENV) $(STAMPS) .tools tools/bin var
