# Debian packages the tests need (included by the top-level Makefile):
#   chromium + chromium-driver  the test that drives the real Airflow UI with selenium
#                               (tests/scripts/test_airflow_local.py)
#   rsync                       gitlab-ci-local copies the project with it for every job it runs
#                               (tests/delivery/test_delivery_gitlab_ci_local.py)
#   make apt-tools   installs them with apt-get where a program is missing (root, or sudo); idempotent
# The stamp is keyed on the package list; a machine that lost a program installs again.

APT_PACKAGES := chromium chromium-driver rsync
APT_COMMANDS := chromium chromedriver rsync
APT_STAMP    := $(STAMPS)/apt-tools-$(shell echo $(APT_PACKAGES) | sha256sum | cut -c1-16)
APT_MISSING  := $(strip $(foreach c,$(APT_COMMANDS),$(if $(shell command -v $(c) 2>/dev/null),,$(c))))

.PHONY: apt-tools

ifneq ($(APT_MISSING),)
.PHONY: $(APT_STAMP)
endif

apt-tools: $(APT_STAMP)

$(APT_STAMP):
	@rm -f $(STAMPS)/apt-tools-* $(STAMPS)/browser-tools-*
	if [ -n "$(APT_MISSING)" ]; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends \
			$(APT_PACKAGES); \
	fi
	chromium --version && chromedriver --version && rsync --version | sed -n 1p
	@mkdir -p $(STAMPS) && touch $@
