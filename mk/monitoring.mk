# The operator's side of monitoring (monitoring/, docs/monitoring.md): the Prometheus alert
# rules checked and unit-tested with promtool (Debian's prometheus package, scripts/bootstrap.sh).
.PHONY: monitoring-lint

PROMTOOL ?= promtool

monitoring-lint: ## promtool check and test of the alert rules (monitoring/prometheus)
	@command -v $(PROMTOOL) >/dev/null || { echo "promtool not found: make bootstrap installs it" >&2; exit 1; }
	$(PROMTOOL) check rules monitoring/prometheus/flower-alerts.yml
	$(PROMTOOL) test rules monitoring/prometheus/tests/flower-alerts.test.yml
