# Browser test tools: Debian's chromium and chromium-driver, for the test that drives the real
# Airflow UI with selenium (tests/scripts/test_airflow_local.py). Included by the top-level Makefile.
#   make browser-tools   installs both with apt-get where either is missing (root, or sudo); idempotent
# The stamp is keyed on the package list; a machine that lost either program installs again.

BROWSER_PACKAGES := chromium chromium-driver
BROWSER_STAMP    := $(STAMPS)/browser-tools-$(shell echo $(BROWSER_PACKAGES) | sha256sum | cut -c1-16)

.PHONY: browser-tools

ifeq ($(and $(shell command -v chromium 2>/dev/null),$(shell command -v chromedriver 2>/dev/null)),)
.PHONY: $(BROWSER_STAMP)
endif

browser-tools: $(BROWSER_STAMP)

$(BROWSER_STAMP):
	@rm -f $(STAMPS)/browser-tools-*
	if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends \
			$(BROWSER_PACKAGES); \
	fi
	chromium --version && chromedriver --version
	@mkdir -p $(STAMPS) && touch $@
