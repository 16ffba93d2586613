# Plugins of the Flower appliance bake, for Packer >= 1.7 (`packer init packer/`).
# Kept apart from flower.pkr.hcl so that Packer 1.6 (Debian 12's package, which builds the
# qemu/ansible plugins in and cannot read this block) can build that file alone:
#   packer build -var appliance=superlink packer/flower.pkr.hcl
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.1.0"
    }
    ansible = {
      source  = "github.com/hashicorp/ansible"
      version = ">= 1.1.0"
    }
  }
}
