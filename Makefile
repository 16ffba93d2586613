# Entry points. On a fresh Debian 12 machine, as root:
#   make demo        the user's path on a local OpenNebula (emulator): appliance images,
#                    deploy.yml, SuperNodes discover the SuperLink, flwr run of the demo over TLS
#   make demo-run    the demo app again on that federation (ROUNDS=3)
#   make demo-down   remove it
#   make test        lint, unit tests, every Molecule scenario and the appliance life cycle
# Each target installs what it needs itself (scripts/bootstrap.sh).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# The default Flower release, and the oldest one supported (the seeds'); `make test` runs the
# end-to-end scenario on both.
FLOWER_VERSION ?= 1.42.0
FLOWER_OLDEST := 1.25.0
# Names of containers and networks carry this id so runs on a shared engine do not collide.
ifndef FLOWER_TEST_ID
FLOWER_TEST_ID := t$(shell date +%s%N | cut -c6-15)
endif
SCENARIOS ?= docker tls firewall gpu monitoring superlink supernode appliance e2e
# The test registry; the scenarios' VMs reach it as flower-registry.test:$(FLOWER_REGISTRY_PORT).
# (Defined before the export: `export X` would define X empty, and `?=` then keeps it empty.)
FLOWER_REGISTRY_PORT ?= 5443
export FLOWER_VERSION FLOWER_TEST_ID FLOWER_REGISTRY_PORT

VENV := .venv
FLWR_PY := .venv-flwr-$(FLOWER_VERSION)/bin/python
IMAGES := .cache/images
IMAGE_ARCHIVE := $(IMAGES)/flower-$(FLOWER_VERSION)-sklearn.tar
REGISTRY_DIR := $(CURDIR)/.cache/registry
ACTIVATE := source $(VENV)/bin/activate &&
# MOLECULE_GLOB: Molecule 26 looks for a scenario "default" before every command and logs a red
# CRITICAL when there is none; pointed at the scenario being run, it finds one.
MOLECULE = $(ACTIVATE) MOLECULE_GLOB=molecule/$(1)/molecule.yml \
	MOLECULE_EPHEMERAL_DIRECTORY=$(CURDIR)/.cache/molecule/$(FLOWER_TEST_ID)/$(1) molecule $(2) -s $(1)
# cryptography 51 deprecates DSA: ansible-core's ssh-agent support and community.crypto's key
# checks touch the names (no DSA is used) and every command would print the warning.
export PYTHONWARNINGS := ignore:DSA is deprecated
DEMO_ID ?= demo
ROUNDS ?= 3

.PHONY: help bootstrap images registry registry-images registry-images-run registry-down images-frameworks site-demo site-demo-up site-demo-down site-demo-destroy lint unit molecule molecule-run lifecycle lifecycle-run test test-lane-roles test-lane-federation e2e-oldest e2e-oldest-run e2e-converge-verify e2e-converge-verify-run demo demo-run demo-down bench bench-exporter bench-inventory e2e-latest docs build

help:
	@grep -E '^#( |$$)' Makefile | head -7 | sed 's/^# \{0,1\}//'
	@echo "Other targets:"
	@awk -F ':.*## ' '/^[a-z][a-zA-Z0-9_-]*:.*## /{printf "  make %-19s %s\n", $$1, $$2}' Makefile mk/*.mk

bootstrap: ## install what the targets need (scripts/bootstrap.sh)
	bash scripts/bootstrap.sh

# The collection's own image builds (playbooks/build_images.yml) with this machine's settings.
BUILD_IMAGES = $(ACTIVATE) ansible-playbook playbooks/build_images.yml \
	  -e ansible_python_interpreter=$(CURDIR)/$(VENV)/bin/python \
	  -e flower_images_version=$(FLOWER_VERSION) \
	  -e flower_images_base_image=local/debian:bookworm \
	  -e flower_images_ca_bundle=/etc/ssl/certs/ca-certificates.crt

# Base images (debootstrap, once) and the Flower image archive the scenarios load.
images: bootstrap ## base images and the Flower images (playbooks/build_images.yml), cached
	bash scripts/build-base-images.sh
	@mkdir -p $(IMAGES)
	@[ -f $(IMAGES)/local-debian-bookworm.tar ] || docker save local/debian:bookworm -o $(IMAGES)/local-debian-bookworm.tar
	$(BUILD_IMAGES)

# The test registry the e2e scenario pulls from, filled as Docker Hub holds Flower's images
# (flwr/<component>:<version>) plus the framework images (flower-<component>:<version>-sklearn):
# the same build (Docker's cache makes it a no-op), then the pushes.
registry-images: images registry ## the test registry, filled as Docker Hub holds Flower's images
	$(MAKE) --no-print-directory registry-images-run

registry-images-run:
	$(BUILD_IMAGES) -e @$(REGISTRY_DIR)/vars.yml

# The test registry (scripts/test-registry.sh): TLS with a test CA, basic auth, shared by every
# test id of this checkout and reused; registry-down stops it (its data stays in $(REGISTRY_DIR)).
registry: ## start the test registry (scripts/test-registry.sh)
	bash scripts/test-registry.sh start

registry-down: ## stop the test registry
	bash scripts/test-registry.sh stop

lint: bootstrap ## yamllint, ansible-lint, ruff, the generated files, alert rules (promtool), changelog, ansible-test sanity
	$(ACTIVATE) yamllint --strict .
	$(ACTIVATE) ansible-lint --offline --profile production
	$(ACTIVATE) ruff check . && ruff format --check .
	$(ACTIVATE) python tools/role_docs.py check
	$(ACTIVATE) python tools/context_docs.py check
	$(ACTIVATE) python tools/oneflow_template.py check
	$(ACTIVATE) python tools/demo_shared.py check
	$(MAKE) --no-print-directory monitoring-lint
	$(ACTIVATE) antsibull-changelog lint
	$(ACTIVATE) bash tools/sanity.sh

unit: bootstrap ## unit, emulator and integration tests
	$(ACTIVATE) python -m pytest -q tests/unit tests/emulator tests/integration --ignore=tests/unit/test_demo_task.py \
	  --ignore=tests/unit/test_pytorch_demo.py
	$(FLWR_PY) -m pytest -q tests/unit/test_demo_task.py
	.venv-torch/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_pytorch_demo.py

molecule: registry-images ## molecule test of SCENARIOS (default: all)
	$(MAKE) --no-print-directory molecule-run

molecule-run:
	@for s in $(SCENARIOS); do \
	  echo "== molecule test -s $$s (id $(FLOWER_TEST_ID))"; \
	  $(call MOLECULE,$$s,test) || exit 1; \
	done

# The appliance life cycle on the emulator's container VMs (tests/appliance/).
lifecycle: appliance-images ## the appliance life cycle on the emulator (tests/appliance)
	$(MAKE) --no-print-directory lifecycle-run

lifecycle-run:
	$(ACTIVATE) python -m pytest -q -s tests/appliance

# The end-to-end scenario on the oldest supported Flower release: converge and verify, less the
# checks that do not depend on the release (marked default_release_only) and the roles' check
# mode and idempotence, which `make molecule` runs on the default release.
e2e-oldest: bootstrap ## the e2e scenario on the oldest supported Flower release
	$(MAKE) --no-print-directory FLOWER_VERSION=$(FLOWER_OLDEST) e2e-converge-verify

# Its own names (test id with an "o"): it may run while the default release's e2e does.
e2e-oldest-run:
	$(MAKE) --no-print-directory FLOWER_VERSION=$(FLOWER_OLDEST) FLOWER_TEST_ID=$(FLOWER_TEST_ID)o \
	  e2e-converge-verify-run

e2e-converge-verify: registry-images
	$(MAKE) --no-print-directory e2e-converge-verify-run

e2e-converge-verify-run:
	@echo "== molecule converge, verify, destroy -s e2e (Flower $(FLOWER_VERSION), id $(FLOWER_TEST_ID))"
	export PYTEST_ADDOPTS='$(if $(filter $(FLOWER_OLDEST),$(FLOWER_VERSION)),-m "not default_release_only")'; \
	status=0; { $(call MOLECULE,e2e,converge) && $(call MOLECULE,e2e,verify); } || status=$$?; \
	  $(call MOLECULE,e2e,destroy); exit $$status

# The default release's images first; then two lanes side by side, each about half the time
# (this machine has two cores, and much of a federation's time is waiting): the oldest
# release's images, the roles' scenarios and e2e on the oldest release; e2e, the appliance
# images and the life cycle. They share the engine and the registry, not names; each lane's
# output comes in one block when it ends.
ROLE_SCENARIOS := $(filter-out e2e,$(SCENARIOS))
test: lint unit registry-images
	$(MAKE) --no-print-directory -j2 --output-sync=recurse test-lane-roles test-lane-federation

test-lane-roles:
	$(MAKE) --no-print-directory FLOWER_VERSION=$(FLOWER_OLDEST) registry-images-run
	$(MAKE) --no-print-directory SCENARIOS="$(ROLE_SCENARIOS)" molecule-run
	$(MAKE) --no-print-directory e2e-oldest-run

test-lane-federation:
	$(MAKE) --no-print-directory SCENARIOS=e2e molecule-run
	$(MAKE) --no-print-directory appliance-images-run
	$(MAKE) --no-print-directory lifecycle-run

# The pytorch and tensorflow variants (not in CI: PyPI's torch is a CUDA build of several GB).
images-frameworks: images ## the pytorch and tensorflow image variants (large)
	$(BUILD_IMAGES) -e '{"flower_images_frameworks": ["pytorch", "tensorflow"]}'
	docker run --rm --entrypoint python3 localhost/flower-supernode:$(FLOWER_VERSION)-pytorch \
	  -c 'import flwr, torch; print("pytorch variant:", flwr.__version__, torch.__version__)'
	docker run --rm --entrypoint python3 localhost/flower-supernode:$(FLOWER_VERSION)-tensorflow \
	  -c 'import flwr, tensorflow as tf; print("tensorflow variant:", flwr.__version__, tf.__version__)'

demo: appliance-images
	$(ACTIVATE) python scripts/appliance_demo.py up --id $(DEMO_ID)

# The demo app again on the federation `make demo` left running (ROUNDS=3 by default).
demo-run: bootstrap
	$(ACTIVATE) python scripts/appliance_demo.py train --id $(DEMO_ID) --rounds $(ROUNDS)

demo-down: bootstrap
	$(ACTIVATE) python scripts/appliance_demo.py down --id $(DEMO_ID)

# The same federation without OpenNebula: three systemd "VMs" configured by site.yml.
site-demo: registry-images ## the federation without OpenNebula: three systemd containers, site.yml
	$(MAKE) --no-print-directory FLOWER_TEST_ID=$(DEMO_ID) site-demo-up

site-demo-up:
	$(call MOLECULE,e2e,converge)
	@ip=$$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' flower-e2e-superlink-$(DEMO_ID)); \
	docker exec flower-e2e-superlink-$(DEMO_ID) cat /opt/flower/certs/ca.crt > demo/sklearn/flower-ca.crt; \
	echo "SuperLink Control API: $$ip:9093 (TLS, CA in demo/sklearn/flower-ca.crt)"; \
	$(FLWR_PY) scripts/flwr_run_check.py demo/sklearn appliance --address $$ip:9093 \
	  --root-certificates demo/sklearn/flower-ca.crt

site-demo-down: bootstrap ## remove it
	$(MAKE) --no-print-directory FLOWER_TEST_ID=$(DEMO_ID) site-demo-destroy

site-demo-destroy:
	$(call MOLECULE,e2e,destroy)

bench: images ## federation benchmark: bare processes against the containers
	$(ACTIVATE) python bench/federation.py --flwr-python $(FLWR_PY)

# What the SuperLink's metrics exporter costs: a bare federation without and with it.
bench-exporter: bootstrap ## exporter cost benchmark (SuperLink CPU and memory, with/without metrics)
	$(ACTIVATE) python bench/exporter_cost.py --flwr-python $(FLWR_PY)

# ansible-inventory with opennebula.flower.oneflow vs. community.general.opennebula (emulator).
bench-inventory: bootstrap ## inventory benchmark against community.general.opennebula
	$(ACTIVATE) python bench/inventory.py

# The end-to-end scenario with another Flower release: LATEST=x.y.z, by default the newest
# release pip can install here (its resolver skips releases whose dependencies it cannot get).
e2e-latest: bootstrap ## the e2e scenario on the newest Flower on PyPI (LATEST=x.y.z)
	v=$${LATEST:-$$($(VENV)/bin/pip install --dry-run --ignore-installed --quiet --report - flwr 2>/dev/null \
	  | $(VENV)/bin/python -c 'import json,sys; print(next(i["metadata"]["version"] for i in json.load(sys.stdin)["install"] if i["metadata"]["name"] == "flwr"))')}; \
	echo "== Flower $$v"; \
	$(MAKE) --no-print-directory FLOWER_VERSION=$$v SCENARIOS=e2e molecule

docs: bootstrap ## render the roles' READMEs from their argument specs
	$(ACTIVATE) python tools/role_docs.py render

build: bootstrap ## the collection tarball
	$(ACTIVATE) ansible-galaxy collection build --force

# Targets of the appliance pieces (packer bake, emulator-backed appliance VMs, ...).
include $(sort $(wildcard mk/*.mk))
