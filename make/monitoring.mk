# Monitoring tools: promtool (checks and unit-tests the chart's alert rules) and the Pushgateway the
# embedded platform starts (the steps push their metrics to it). Included by the top-level Makefile.
#   make monitoring-tools   Debian's prometheus and prometheus-pushgateway packages, unpacked without
#                           root into .tools/prometheus (apt-get download + dpkg-deb -x); idempotent
# The stamp is keyed on the package list; a deleted binary fetches again. Where apt-get is missing
# (not Debian/Ubuntu), put promtool and pushgateway on PATH instead: tests and the embedded platform
# look in .tools/prometheus/usr/bin first, then on PATH.

MONITORING_PACKAGES := prometheus prometheus-pushgateway
MONITORING_DIR      := .tools/prometheus
MONITORING_BIN      := $(MONITORING_DIR)/usr/bin
MONITORING_STAMP    := $(STAMPS)/monitoring-tools-$(shell echo $(MONITORING_PACKAGES) | sha256sum | cut -c1-16)

.PHONY: monitoring-tools

ifeq ($(and $(wildcard $(MONITORING_BIN)/promtool),$(wildcard $(MONITORING_BIN)/prometheus-pushgateway)),)
.PHONY: $(MONITORING_STAMP)
endif

monitoring-tools: $(MONITORING_STAMP)

$(MONITORING_STAMP):
	@rm -f $(STAMPS)/monitoring-tools-*
	@command -v apt-get >/dev/null || { echo "apt-get not found: install promtool and pushgateway on PATH"; exit 1; }
	rm -rf $(MONITORING_DIR)/debs && mkdir -p $(MONITORING_DIR)/debs
	cd $(MONITORING_DIR)/debs && apt-get download -q $(MONITORING_PACKAGES)
	for deb in $(MONITORING_DIR)/debs/*.deb; do dpkg-deb -x "$$deb" $(MONITORING_DIR); done
	rm -rf $(MONITORING_DIR)/debs
	$(MONITORING_BIN)/promtool --version | head -1
	$(MONITORING_BIN)/prometheus-pushgateway --version 2>&1 | head -1
	@mkdir -p $(STAMPS) && touch $@
