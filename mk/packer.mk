# Appliance images with Packer (packer/, scripts/bake/; see packer/README.md). Not in CI: one
# bake takes minutes, more under software emulation (tcg), which is what this project's
# machines can run.
#   make bake           both images: .cache/bake/output/{superlink,supernode}/flower-*.qcow2
#   make bake-check     boot each baked image once and check its boot hook configures it
#   make bake-validate  syntax of the template, with the Packer installed here
# Variables: BAKE_APPLIANCES (superlink supernode), BAKE_ACCELERATOR (kvm|tcg; default: kvm
# when the CPU has vmx/svm), BAKE_CPUS, BAKE_MEMORY, BASE_IMAGE, ONE_CONTEXT_DEB, DOCKER_SOURCE.
BAKE_APPLIANCES ?= superlink supernode
BAKE_ENV := FLOWER_VERSION=$(FLOWER_VERSION) \
	$(foreach v,BAKE_ACCELERATOR BAKE_CPUS BAKE_MEMORY BASE_IMAGE ONE_CONTEXT_DEB DOCKER_SOURCE,\
	$(if $(filter-out undefined,$(origin $(v))),$(v)='$($(v))'))

.PHONY: bake bake-check bake-validate bake-host bake-base bake-report $(addprefix bake-,$(BAKE_APPLIANCES))

bake-host:
	bash scripts/bake/host-packages.sh

# The Debian 12 base qcow2 (debootstrap + GRUB), built once into .cache/bake/.
bake-base: bake-host
	bash scripts/bake/base-image.sh

$(addprefix bake-,$(BAKE_APPLIANCES)): bake-%: images bake-base
	$(BAKE_ENV) bash scripts/bake/bake.sh $*

bake: $(addprefix bake-,$(BAKE_APPLIANCES)) ## the QCOW2 appliances with Packer (packer/README.md)
	bash scripts/bake/report.sh

# Boots what `make bake` left (it does not bake again).
bake-check: bake-host ## boot each baked QCOW2 once with a context
	@for a in $(BAKE_APPLIANCES); do \
	  $(BAKE_ENV) bash scripts/bake/boot-check.sh $$a || exit 1; \
	done
	bash scripts/bake/report.sh

bake-report:
	bash scripts/bake/report.sh

# Packer 1.6 (Debian 12) cannot read packer/plugins.pkr.hcl: it checks the template file alone.
bake-validate: bake-host ## packer validate
	if packer version | grep -qE '^Packer v1\.[0-6]\.'; then \
	  packer validate -syntax-only packer/flower.pkr.hcl; \
	else \
	  packer init packer/ && packer validate -syntax-only packer/; \
	fi
