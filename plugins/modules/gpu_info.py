#!/usr/bin/python
# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_info
short_description: Detect the NVIDIA GPUs of a VM, layer by layer
version_added: 0.1.0
description:
  - Looks at each layer a container needs to use an NVIDIA GPU, without guessing from names -
    the PCI devices (vendor C(0x10de), class C(0x0300) VGA or C(0x0302) 3D controller, read
    from sysfs), the NVIDIA kernel driver (its module in sysfs), C(nvidia-smi) answering with
    the GPUs, and the NVIDIA Container Toolkit (C(nvidia-container-runtime-hook), which Docker's
    C(--gpus) calls).
  - Sets the fact C(flower_gpu) (RV(ansible_facts.flower_gpu)); RV(ansible_facts.flower_gpu.usable)
    tells whether a container can get the GPUs, RV(ansible_facts.flower_gpu.missing) names the
    first layer that is missing.
  - With O(required), a missing layer is reported as a warning that names it and says what to
    check (C(ONEAPP_FL_GPU_ENABLED=YES) on a VM without a usable GPU).
author:
  - opennebula.flower contributors (@opennebula)
extends_documentation_fragment:
  - opennebula.flower._attributes
  - opennebula.flower._attributes.info_module
attributes:
  facts:
    description: Action returns an C(ansible_facts) dictionary that will update existing host facts.
    support: full
options:
  required:
    description:
      - A GPU is expected; warn, naming the missing layer, when none is usable.
    type: bool
    default: false
  sysfs:
    description:
      - Where sysfs is mounted (another root for tests).
    type: path
    default: /sys
notes:
  - Only NVIDIA GPUs are detected; other vendors' devices are not listed.
seealso:
  - name: The GPU layers and their checks
    description: docs/gpu.md in the collection.
    link: https://github.com/opennebula/flower-opennebula/blob/main/docs/gpu.md
"""

EXAMPLES = r"""
- name: Detect the GPUs (sets flower_gpu)
  opennebula.flower.gpu_info:
    required: "{{ gpu_enabled }}"

- name: Say which layer is missing
  ansible.builtin.debug:
    msg: "{{ flower_gpu.missing or 'GPU usable' }}"
"""

RETURN = r"""
ansible_facts:
  description: The facts set.
  returned: always
  type: dict
  contains:
    flower_gpu:
      description: What was found, layer by layer.
      returned: always
      type: dict
      contains:
        pci_devices:
          description: NVIDIA display controllers on the PCI bus.
          type: list
          elements: dict
          sample: [{address: "0000:01:00.0", vendor: "0x10de", device: "0x2330",
                    class: "0x0302", driver: nvidia}]
        driver_loaded:
          description: Whether the C(nvidia) kernel module is loaded.
          type: bool
        driver_version:
          description: The loaded module's version, empty when unknown.
          type: str
        nvidia_smi:
          description: Path of C(nvidia-smi), empty when not installed.
          type: str
        gpus:
          description: The GPUs C(nvidia-smi) lists.
          type: list
          elements: dict
          sample: [{index: 0, name: NVIDIA H100 80GB HBM3, memory_mib: 81559,
                    pci_bus_id: "00000000:01:00.0"}]
        toolkit:
          description: Path of C(nvidia-container-runtime-hook), empty when not installed.
          type: str
        runtime:
          description: Path of C(nvidia-container-runtime) (Docker's C(nvidia) runtime), empty when
            not installed.
          type: str
        usable:
          description: Every layer is there; a container can be given the GPUs.
          type: bool
        missing:
          description: The first missing layer, one of V(pci), V(driver), V(nvidia-smi),
            V(toolkit); empty when usable.
          type: str
        reason:
          description: What is missing and what to check, in words; empty when usable.
          type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

NVIDIA_VENDOR = "0x10de"
# PCI class codes (class/subclass) of display controllers: VGA, 3D controller.
GPU_CLASSES = ("0x0300", "0x0302")
SMI_QUERY = "--query-gpu=index,name,memory.total,pci.bus_id"

REASONS = {
    "pci": (
        "no NVIDIA PCI device (vendor 0x10de, class 0x0300/0x0302) in this VM: the VM template "
        "passes no GPU through (its PCI section), or the host cannot (IOMMU, vfio-pci; see "
        "docs/gpu.md)"
    ),
    "driver": (
        "the NVIDIA kernel driver is not loaded (lsmod | grep nvidia): the image has no driver "
        "(bake it with gpu_install_enabled) or it failed to load (dmesg | grep -i nvidia)"
    ),
    "nvidia-smi": "nvidia-smi is not installed: the image has no NVIDIA driver utilities",
    "toolkit": (
        "the NVIDIA Container Toolkit is not installed (nvidia-container-runtime-hook): bake the "
        "image with gpu_install_enabled"
    ),
}


def _read(path):
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def pci_devices(sysfs):
    """The NVIDIA display controllers in sysfs, sorted by address."""
    root = os.path.join(sysfs, "bus", "pci", "devices")
    try:
        addresses = sorted(os.listdir(root))
    except OSError:
        return []
    found = []
    for address in addresses:
        path = os.path.join(root, address)
        vendor = _read(os.path.join(path, "vendor")).lower()
        pci_class = _read(os.path.join(path, "class")).lower()[:6]
        if vendor != NVIDIA_VENDOR or pci_class not in GPU_CLASSES:
            continue
        driver = os.path.join(path, "driver")
        found.append(
            {
                "address": address,
                "vendor": vendor,
                "device": _read(os.path.join(path, "device")).lower(),
                "class": pci_class,
                "driver": os.path.basename(os.path.realpath(driver))
                if os.path.lexists(driver)
                else "",
            }
        )
    return found


def parse_smi(text):
    """Rows of ``nvidia-smi --query-gpu=index,name,memory.total,pci.bus_id
    --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        memory = fields[2]
        gpus.append(
            {
                "index": int(fields[0]),
                "name": fields[1],
                "memory_mib": int(memory) if memory.isdigit() else None,
                "pci_bus_id": fields[3],
            }
        )
    return gpus


def detect(module, sysfs):
    facts = {
        "pci_devices": pci_devices(sysfs),
        "driver_loaded": os.path.isdir(os.path.join(sysfs, "module", "nvidia")),
        "driver_version": _read(os.path.join(sysfs, "module", "nvidia", "version")),
        "nvidia_smi": module.get_bin_path("nvidia-smi") or "",
        "gpus": [],
        "toolkit": module.get_bin_path("nvidia-container-runtime-hook") or "",
        "runtime": module.get_bin_path("nvidia-container-runtime") or "",
    }
    smi_error = ""
    if facts["nvidia_smi"] and facts["driver_loaded"]:
        rc, out, err = module.run_command(
            [facts["nvidia_smi"], SMI_QUERY, "--format=csv,noheader,nounits"]
        )
        facts["gpus"] = parse_smi(out) if rc == 0 else []
        if not facts["gpus"]:
            smi_error = (err or out).strip().splitlines()[-1:] or [f"exit code {rc}"]
            smi_error = smi_error[0]
    missing, reason = "", ""
    if not facts["pci_devices"]:
        missing = "pci"
    elif not facts["driver_loaded"]:
        missing = "driver"
    elif not facts["nvidia_smi"]:
        missing = "nvidia-smi"
    elif not facts["gpus"]:
        missing = "nvidia-smi"
        reason = (
            f"nvidia-smi lists no GPU ({smi_error}): the driver does not drive the passed-through "
            "device (dmesg | grep -i nvidia; a driver too old for the GPU, or the GPU still bound "
            "to vfio-pci inside the VM)"
        )
    elif not facts["toolkit"]:
        missing = "toolkit"
    facts.update(usable=not missing, missing=missing, reason=reason or REASONS.get(missing, ""))
    return facts


def main():
    module = AnsibleModule(
        argument_spec={
            "required": {"type": "bool", "default": False},
            "sysfs": {"type": "path", "default": "/sys"},
        },
        supports_check_mode=True,
    )
    facts = detect(module, module.params["sysfs"])
    if module.params["required"] and not facts["usable"]:
        missing = facts["missing"]
        module.warn(
            f"FL_GPU_ENABLED=YES but GPU not available (missing layer: {missing}): "
            f"{facts['reason']}. Training on the CPU."
        )
    module.exit_json(changed=False, ansible_facts={"flower_gpu": facts})


if __name__ == "__main__":
    main()
