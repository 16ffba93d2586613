# Flower appliance images for OpenNebula: one template, two appliances.
#   packer init packer/ && packer build -var appliance=superlink -var-file=my.pkrvars.hcl packer/
# With Packer 1.6 (no `packer init`), build this file alone: see plugins.pkr.hcl and README.md.
#
# The install phase is the collection's own playbooks/bake.yml (Packer's ansible provisioner):
# Docker, the Flower image, one-context and the boot hook. Nothing VM-specific is configured
# here; the boot hook does that at first boot from the OpenNebula context.

variable "appliance" {
  type        = string
  description = "Which appliance to bake: superlink or supernode (the bake.yml group)."
}

variable "base_image" {
  type        = string
  description = "Path or URL of the base qcow2 (a Debian 12 or Ubuntu cloud image with SSH and python3)."
}

variable "base_image_checksum" {
  type        = string
  default     = "none"
  description = "Checksum of base_image, e.g. sha256:..., or file:URL; \"none\" skips the check."
}

variable "disk_size" {
  type        = string
  default     = ""
  description = "Virtual disk size of the appliance; empty: 10G for the SuperLink, 20G for the SuperNode."
}

variable "output_dir" {
  type        = string
  default     = "build/packer"
  description = "Where <appliance>.qcow2 is written (a directory per appliance below it)."
}

variable "accelerator" {
  type        = string
  default     = "kvm"
  description = "QEMU accelerator: kvm, or tcg (software emulation, slow) where KVM is unusable."
}

variable "cpu_model" {
  type        = string
  default     = ""
  description = "QEMU -cpu; empty: host with kvm, max with tcg."
}

variable "cpus" {
  type    = number
  default = 2
}

variable "memory" {
  type    = number
  default = 2048
}

variable "flower_version" {
  type        = string
  default     = "1.42.0"
  description = "Flower release of the images (the archive must hold <component>:<version>-sklearn)."
}

variable "flower_image_archive" {
  type        = string
  default     = ""
  description = "A `docker save` tar with the Flower images (make images); empty: the roles pull flwr/* from a registry."
}

variable "one_context_package" {
  type        = string
  default     = ""
  description = "Path of the one-context .deb on this machine (installed by the appliance role); empty: none."
}

variable "pip_ca_bundle" {
  type        = string
  default     = "/etc/ssl/certs/ca-certificates.crt"
  description = "CA bundle of this machine that pip in the build VM trusts (a TLS-inspecting proxy's CA); removed at cleanup."
}

variable "docker_source" {
  type        = string
  default     = "ce"
  description = "docker role: ce (Docker's apt repository) or distribution (the distribution's docker.io)."
}

variable "gpu_support" {
  type        = bool
  default     = false
  description = "SuperNode image: bake the NVIDIA driver and Container Toolkit (gpu role, gpu_install_enabled; the build host needs no GPU)."
}

variable "ansible_extra_arguments" {
  type        = list(string)
  default     = []
  description = "More ansible-playbook arguments, e.g. [\"-e\", \"superlink_image_tag=...\"]."
}

variable "collection_dir" {
  type        = string
  default     = ""
  description = "Root of the opennebula.flower checkout (playbooks/, ansible.cfg); empty: the parent of this directory."
}

variable "ssh_username" {
  type    = string
  default = "root"
}

variable "ssh_private_key_file" {
  type        = string
  description = "Private key whose public half the base image authorizes for ssh_username."
}

variable "remove_build_key" {
  type        = bool
  default     = true
  description = "Remove ssh_username's authorized_keys at cleanup (one-context installs the VM owner's key at boot)."
}

variable "serial_log" {
  type        = string
  default     = ""
  description = "File for the guest's serial console (debugging); empty: none."
}

locals {
  repo      = var.collection_dir != "" ? var.collection_dir : abspath("${path.root}/..")
  disk_size = var.disk_size != "" ? var.disk_size : (var.appliance == "supernode" ? "20G" : "10G")
  cpu_model = var.cpu_model != "" ? var.cpu_model : (var.accelerator == "kvm" ? "host" : "max")

  # The archive is served by Packer's HTTP server (on 127.0.0.1, which the guest reaches as
  # 10.0.2.2), fetched by prepare.sh and loaded by the roles (image source 'load'). Without
  # one, the roles pull flwr/* from the registry.
  image_dir     = "/var/cache/flower-images"
  archive_name  = var.flower_image_archive != "" ? basename(var.flower_image_archive) : ""
  archive_guest = "${local.image_dir}/${local.archive_name}"
  image_source  = var.flower_image_archive != "" ? "load" : "pull"
}

source "qemu" "flower" {
  iso_url      = var.base_image
  iso_checksum = var.base_image_checksum
  disk_image   = true
  # A standalone image (no backing file), grown to disk_size; prepare.sh grows the filesystem.
  use_backing_file = false
  disk_size        = local.disk_size
  format           = "qcow2"
  # Trimmed blocks stay unallocated (cleanup.sh ends with fstrim), then compressed at the end.
  disk_interface     = "virtio"
  disk_discard       = "unmap"
  disk_detect_zeroes = "unmap"
  disk_compression   = true

  accelerator  = var.accelerator
  machine_type = "q35"
  cpus         = var.cpus
  memory       = var.memory
  net_device   = "virtio-net"
  headless     = true
  qemuargs = concat(
    [["-cpu", local.cpu_model]],
    [for f in [var.serial_log] : ["-serial", "file:${f}"] if f != ""],
  )

  http_directory    = var.flower_image_archive != "" ? dirname(var.flower_image_archive) : ""
  http_bind_address = "127.0.0.1"

  output_directory = "${var.output_dir}/${var.appliance}"
  vm_name          = "flower-${var.appliance}.qcow2"

  boot_wait            = "1s"
  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_private_key_file = var.ssh_private_key_file
  # Software emulation (tcg) boots in ~20 s on a quiet machine; leave room for a busy one.
  ssh_timeout      = "20m"
  shutdown_command = "shutdown -P now"
}

build {
  sources = ["source.qemu.flower"]

  provisioner "shell" {
    script           = "${path.root}/scripts/prepare.sh"
    environment_vars = ["IMAGE_DIR=${local.image_dir}", "ARCHIVE_NAME=${local.archive_name}"]
  }

  # Uploaded next to the archive, so cleanup.sh removes it with it.
  provisioner "file" {
    source      = var.pip_ca_bundle
    destination = "${local.image_dir}/pip-ca-bundle.crt"
  }

  provisioner "ansible" {
    playbook_file = "${local.repo}/playbooks/bake.yml"
    groups        = [var.appliance]
    user          = var.ssh_username
    # Straight to the guest's forwarded SSH port with the build key: Packer 1.6's SSH proxy
    # offers only ssh-rsa host keys, which OpenSSH >= 8.8 refuses.
    use_proxy = false
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${local.repo}/ansible.cfg",
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_NOCOLOR=True",
    ]
    extra_arguments = concat([
      "-e", "ansible_python_interpreter=/usr/bin/python3",
      "-e", "docker_source=${var.docker_source}",
      "-e", "superlink_image_source=${local.image_source}",
      "-e", "supernode_image_source=${local.image_source}",
      "-e", "superlink_image_archive=${var.flower_image_archive != "" ? local.archive_guest : ""}",
      "-e", "supernode_image_archive=${var.flower_image_archive != "" ? local.archive_guest : ""}",
      "-e", "appliance_one_context_package=${var.one_context_package}",
      "-e", "appliance_pip_ca_bundle=${local.image_dir}/pip-ca-bundle.crt",
      # The role removes what it knows it left (its one-context .deb copy, and the archive
      # directory given here); cleanup.sh does the rest.
      # (JSON: a key=value pair would make the boolean a string, which ansible-core 2.19
      # refuses in a conditional.)
      "-e", jsonencode({ appliance_cleanup = true, appliance_cleanup_paths = [local.image_dir] }),
      "-e", "superlink_flower_version=${var.flower_version}",
      "-e", "supernode_flower_version=${var.flower_version}",
      "-e", jsonencode({ gpu_install_enabled = var.gpu_support }),
    ], var.ansible_extra_arguments)
  }

  provisioner "shell" {
    script           = "${path.root}/scripts/cleanup.sh"
    environment_vars = [
      "IMAGE_DIR=${local.image_dir}",
      "REMOVE_BUILD_KEY=${var.remove_build_key}",
      "BUILD_USER=${var.ssh_username}",
    ]
  }
}
