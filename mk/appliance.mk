# Container counterparts of the appliance QCOW2s, booted as VMs by the emulator's container
# backend (opennebula_emulator/README.md), and the one-context stand-in they install.
.PHONY: one-context-standin appliance-images appliance-images-run test-container-vms bench-appliance

one-context-standin:
	bash scripts/one-context-standin/build-deb.sh

# local/flower-appliance-{superlink,supernode}:$(FLOWER_VERSION), baked as a default Packer bake
# (images pulled from a registry: the test registry); cached on a hash of the inputs.
appliance-images: registry-images ## the container counterparts of the appliance QCOW2s, cached
	$(MAKE) --no-print-directory appliance-images-run

appliance-images-run:
	bash scripts/build-appliance-images.sh

test-container-vms: appliance-images
	$(ACTIVATE) python -m pytest -q tests/appliance/test_container_vms.py

# Boot-to-FL_READY, discovery latency, time to the first round, image sizes (bench/appliance.py).
bench-appliance: appliance-images ## boot-to-FL_READY and discovery benchmark
	$(ACTIVATE) python bench/appliance.py --json-out bench/results/appliance.json
