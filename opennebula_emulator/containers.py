"""Container backend: each emulated VM is a systemd container, like a KVM VM booted from an image.

On VM creation (:class:`~.core.Hooks`) the backend picks a container image for the VM (the
counterpart of the QCOW2 its DISK refers to), starts it with ``docker run`` on a Docker network,
gives the VM the container's address, writes the context "CD-ROM" (``context.sh`` and
``token.txt`` as oned writes them) into a host directory bind-mounted read-only in the container,
and lets the VM boot. When the VM reaches DONE the container and its volumes are removed. Power
off / resume (and stop / undeploy / suspend) stop and start the container.

Only the ``docker`` CLI is used (no Python SDK), and only when a VM is created: importing this
module needs nothing beyond the standard library.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import template_syntax as ts
from .state import ACTIVE, DONE, LCM, Vm

if TYPE_CHECKING:
    from .server import Emulator

log = logging.getLogger("opennebula_emulator.containers")

LABEL = "org.opennebula.emulator"
# Where the context "CD-ROM" appears in the container (/run is a tmpfs, /mnt is the user's).
CDROM_PATH = "/var/lib/one-context/cdrom"
# What the VM attribute (USER_TEMPLATE, then TEMPLATE) naming an appliance or an image is called.
IMAGE_ATTRIBUTE = "EMULATOR_CONTAINER_IMAGE"
# The run options of a systemd "VM" with its own Docker engine on this kind of host
# (molecule/e2e/molecule.yml, reference/molecule-docker-recipe.md): never --privileged.
SYSTEMD_RUN_OPTIONS = (
    "--cap-add=SYS_ADMIN",
    "--cap-add=NET_ADMIN",
    "--cap-add=SYS_PTRACE",
    "--security-opt=seccomp=unconfined",
    "--cgroupns=private",
    "--tmpfs=/run",
    "--tmpfs=/run/lock",
    "--volume=/var/lib/docker",
    "--stop-signal=SIGRTMIN+3",
)
# PID 1 waits until the CD-ROM is "inserted" (context.sh is written last, atomically), then
# becomes the image's init: the hypervisor powers a VM on only once its context ISO exists.
_WAIT_CDROM = (
    'i=0; while [ ! -f "$0/context.sh" ]; do i=$((i+1)); '
    '[ "$i" -gt 3000 ] && { echo "no context CD-ROM in $0" >&2; exit 1; }; sleep 0.1; done; '
    'exec "$@"'
)
_STOPPED_STATES = {"STOPPED", "SUSPENDED", "POWEROFF", "UNDEPLOYED"}
_BOOTED_LCM = {
    i
    for name, i in LCM.items()
    if name == "RUNNING" or (name.startswith("BOOT_") and not name.endswith("FAILURE"))
}


class ContainerError(RuntimeError):
    pass


@dataclass
class ContainerOptions:
    """How VMs become containers.

    ``appliances``: DISK IMAGE name → Docker image (``{"flower-superlink":
    "local/flower-appliance-superlink:1.42.0"}``). ``templates``: VM template name → Docker image,
    for VMs without a mapped disk. ``attribute``: a USER_TEMPLATE/TEMPLATE attribute naming an
    appliance (looked up in ``appliances``) or a Docker image. ``default_image``: for every other
    VM; without one such VMs boot as plain emulated VMs.
    ``volumes``: extra ``docker run --volume`` values (e.g. the Flower image archive,
    ``"/abs/.cache/images:/var/cache/flower-images:ro"``). ``context_dir``: where the per-VM
    CD-ROM directories are written (default: a temporary directory removed on close).
    ``create_network``: create ``network`` when missing (and remove it on close).
    ``keep``: leave containers (and a created network) behind on close, for debugging.
    """

    network: str = "bridge"
    appliances: dict[str, str] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    attribute: str = IMAGE_ATTRIBUTE
    default_image: str | None = None
    name_prefix: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    context_dir: str | os.PathLike[str] | None = None
    cdrom_path: str = CDROM_PATH
    volumes: list[str] = field(default_factory=list)
    extra_run_args: list[str] = field(default_factory=list)
    create_network: bool = True
    keep: bool = False
    docker: str = "docker"
    poll_interval: float = 1.0

    @property
    def prefix(self) -> str:
        return self.name_prefix or f"one-emu-{self.run_id}"


# --------------------------------------------------------------------------- pure helpers
def container_name(prefix: str, vm_id: int) -> str:
    return f"{prefix}-vm-{vm_id}"


def _shell_single_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def render_context_sh(context: Mapping[str, Any]) -> str:
    """``context.sh`` as oned writes it into the context ISO (``VirtualMachine::generate_context``):
    a comment line, then ``NAME='value'`` for every single-valued CONTEXT attribute in name
    order (oned keeps them in a ``std::map``), every ``'`` written as ``'\\''``."""
    lines = ["# Context variables generated by OpenNebula"]
    for key in sorted(context):
        value = context[key]
        if isinstance(value, str):
            lines.append(f"{key}={_shell_single_quote(value)}")
    return "\n".join(lines) + "\n"


def render_token_txt(token: str) -> str:
    """``token.txt``: the OneGate token followed by a newline (oned's ``token_file``)."""
    return token + "\n"


def vm_disk_images(vm: Vm) -> list[str]:
    """The IMAGE names of the VM's disks, in disk order (missing/odd entries skipped)."""
    template = vm.template if isinstance(getattr(vm, "template", None), dict) else {}
    names = []
    for disk in ts.values(template, "DISK"):
        if isinstance(disk, dict) and isinstance(disk.get("IMAGE"), str) and disk["IMAGE"]:
            names.append(disk["IMAGE"])
    return names


def _attribute(vm: Vm, name: str) -> str | None:
    for tmpl in (getattr(vm, "user_template", None), getattr(vm, "template", None)):
        if isinstance(tmpl, dict):
            value = ts.first(tmpl, name)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def select_image(
    vm: Vm, options: ContainerOptions, template_name: str | None = None
) -> tuple[str | None, str]:
    """The Docker image for a VM and why: a mapped DISK IMAGE name first (the real thing: the
    QCOW2 the VM boots from), then the ``attribute``, the VM template name, ``default_image``.
    Returns ``(None, reason)`` when nothing applies."""
    for image_name in vm_disk_images(vm):
        if image_name in options.appliances:
            return options.appliances[image_name], f"DISK IMAGE={image_name}"
    value = _attribute(vm, options.attribute)
    if value:
        return options.appliances.get(value, value), f"{options.attribute}={value}"
    if template_name and template_name in options.templates:
        return options.templates[template_name], f"template {template_name}"
    if options.default_image:
        return options.default_image, "default image"
    return None, "no mapping"


def run_arguments(
    options: ContainerOptions,
    vm: Vm,
    image: str,
    context_host_dir: str | os.PathLike[str],
    init: Sequence[str],
) -> list[str]:
    """``docker run`` arguments (after ``docker``) for a VM's container."""
    args = [
        "run",
        "--detach",
        f"--name={container_name(options.prefix, vm.id)}",
        f"--network={options.network}",
        *SYSTEMD_RUN_OPTIONS,
        f"--label={LABEL}.run={options.run_id}",
        f"--label={LABEL}.vm-id={vm.id}",
        f"--label={LABEL}.vm-name={vm.name}",
        f"--volume={Path(context_host_dir).resolve()}:{options.cdrom_path}:ro",
    ]
    args += [f"--volume={v}" for v in options.volumes]
    args += list(options.extra_run_args)
    args += ["--entrypoint=/bin/sh", image, "-c", _WAIT_CDROM, options.cdrom_path, *init]
    return args


def _write_atomic(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -------------------------------------------------------------------------------- backend
Runner = Callable[[list[str]], str]


class ContainerBackend:
    """Starts, stops and removes the containers of one emulator run.

    ``runner(args) -> stdout`` runs ``docker <args>`` (replaceable in tests); it raises
    :class:`ContainerError` on failure.
    """

    def __init__(self, options: ContainerOptions, runner: Runner | None = None) -> None:
        self.options = options
        self.runner = runner or self._docker
        self.emu: Emulator | None = None
        self.gateway: str | None = None
        self.subnet: str | None = None
        self._own_network = False
        self._own_context_dir = options.context_dir is None
        self.context_dir = Path(
            options.context_dir
            if options.context_dir is not None
            else tempfile.mkdtemp(prefix=f"{options.prefix}-context-")
        )
        self._lock = threading.Lock()
        self._vm_locks: dict[int, threading.Lock] = {}
        self._vms: dict[int, dict[str, Any]] = {}  # vm id -> {"name", "image", "ip", "running"}
        self._deleted: set[int] = set()
        self._init_cache: dict[str, list[str]] = {}
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.boot_times: dict[int, float] = {}  # vm id -> seconds from hook start to boot_vm

    # ------------------------------------------------------------------------ docker
    def _docker(self, args: list[str]) -> str:
        cmd = [self.options.docker, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
        if proc.returncode != 0:
            raise ContainerError(
                f"{shlex.join(cmd[:3])} ... failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc.stdout

    def _inspect(self, kind: str, name: str, fmt: str) -> Any:
        return json.loads(self.runner([kind, "inspect", "--format", fmt, name]))

    # --------------------------------------------------------------------- set-up
    def prepare(self) -> str:
        """Make sure the network exists; returns its gateway (where the emulator must listen
        for the containers to reach OneGate)."""
        opts = self.options
        try:
            ipam = self._inspect("network", opts.network, "{{json .IPAM.Config}}")
        except ContainerError:
            if not opts.create_network:
                raise
            self.runner(["network", "create", f"--label={LABEL}.run={opts.run_id}", opts.network])
            self._own_network = True
            ipam = self._inspect("network", opts.network, "{{json .IPAM.Config}}")
        config = next((c for c in ipam or [] if "." in c.get("Subnet", "")), None)
        if config is None:
            raise ContainerError(f"network {opts.network} has no IPv4 subnet")
        self.subnet = config["Subnet"]
        net = ipaddress.IPv4Network(self.subnet)
        self.gateway = config.get("Gateway") or str(next(net.hosts()))
        return self.gateway

    def attach(self, emu: Emulator) -> None:
        """Hook into an emulator: VMs wait in PENDING for their container, OneGate is
        announced on the network's gateway, the Docker network is an emulator network too."""
        if self.gateway is None:
            self.prepare()
        self.emu = emu
        emu.rt.config.auto_boot = False
        hooks = emu.hooks
        previous_create, previous_delete = hooks.on_vm_create, hooks.on_vm_delete

        def on_create(vm: Vm) -> None:
            self.on_vm_create(vm)
            if previous_create is not None:
                previous_create(vm)

        def on_delete(vm: Vm) -> None:
            self.on_vm_delete(vm)
            if previous_delete is not None:
                previous_delete(vm)

        hooks.on_vm_create, hooks.on_vm_delete = on_create, on_delete
        net = ipaddress.IPv4Network(self.subnet or "0.0.0.0/32")
        if emu.store.network_by_name(self.options.network) is None and net.num_addresses > 4:
            hosts = net.hosts()
            next(hosts)
            emu.add_network(
                self.options.network,
                ar_start=str(next(hosts)),
                ar_size=net.num_addresses - 3,
                network_address=str(net.network_address),
                network_mask=str(net.netmask),
                gateway=self.gateway,
                dns=self.gateway,
                bridge=self.options.network,
            )
        self._poller = threading.Thread(target=self._poll, name="one-emu-containers", daemon=True)
        self._poller.start()

    # ---------------------------------------------------------------------- queries
    def container_name(self, vm_id: int) -> str:
        return container_name(self.options.prefix, vm_id)

    def container_info(self, vm_id: int) -> dict[str, Any] | None:
        with self._lock:
            info = self._vms.get(vm_id)
            return dict(info) if info is not None else None

    def exec(self, vm_id: int, *cmd: str) -> str:
        """``docker exec`` in the VM's container; returns stdout."""
        return self.runner(["exec", self.container_name(vm_id), *cmd])

    def context_host_dir(self, vm_id: int) -> Path:
        return self.context_dir / self.container_name(vm_id)

    # ------------------------------------------------------------------------ hooks
    def _vm_lock(self, vm_id: int) -> threading.Lock:
        with self._lock:
            return self._vm_locks.setdefault(vm_id, threading.Lock())

    def _template_name(self, vm: Vm) -> str | None:
        tid = ts.first(vm.template, "TEMPLATE_ID") if isinstance(vm.template, dict) else None
        if self.emu is None or not isinstance(tid, str) or not tid.isdigit():
            return None
        found = self.emu.store.vm_templates.get(int(tid))
        return found.name if found is not None else None

    def _init_command(self, image: str) -> list[str]:
        if image not in self._init_cache:
            config = self._inspect("image", image, "{{json .Config}}") or {}
            init = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
            self._init_cache[image] = init or ["/sbin/init"]
        return self._init_cache[image]

    def on_vm_create(self, vm: Vm) -> None:
        emu = self.emu
        assert emu is not None, "attach() the backend to an emulator first"
        started = time.monotonic()
        with self._vm_lock(vm.id):
            if vm.id in self._deleted or vm.state == DONE:
                return
            with emu.lock:
                image, why = select_image(vm, self.options, self._template_name(vm))
            if image is None:
                log.info("VM %s: %s, booting it without a container", vm.id, why)
                emu.boot_vm(vm.id)
                return
            name = self.container_name(vm.id)
            log.info("VM %s: container %s from %s (%s)", vm.id, name, image, why)
            cdrom = self.context_host_dir(vm.id)
            try:
                cdrom.mkdir(parents=True, exist_ok=True)
                cdrom.chmod(0o700)
                args = run_arguments(self.options, vm, image, cdrom, self._init_command(image))
                self.runner(args)
                with self._lock:
                    self._vms[vm.id] = {"name": name, "image": image, "ip": None, "running": True}
                networks = self._inspect("container", name, "{{json .NetworkSettings.Networks}}")
                ip = (networks.get(self.options.network) or {}).get("IPAddress")
                if not ip:
                    raise ContainerError(f"{name} has no address on {self.options.network}")
                with self._lock:
                    self._vms[vm.id]["ip"] = ip
                emu.set_vm_ip(vm.id, ip)
                self.write_cdrom(vm)
            except (ContainerError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                log.error("VM %s: could not start its container: %s", vm.id, exc)
                emu.set_vm_state(vm.id, "ACTIVE", "BOOT_FAILURE")
                return
            emu.boot_vm(vm.id)
            self.boot_times[vm.id] = time.monotonic() - started

    def write_cdrom(self, vm: Vm) -> None:
        """The context "CD-ROM" of a VM: ``token.txt`` (when TOKEN=YES) then ``context.sh``,
        which the container's PID 1 waits for, so it is written last and atomically."""
        emu = self.emu
        assert emu is not None
        with emu.lock:
            ctx = ts.first(vm.template, "CONTEXT")
            context = dict(ctx) if isinstance(ctx, dict) else {}
        token = emu.vm_token(vm.id)
        cdrom = self.context_host_dir(vm.id)
        if token:
            _write_atomic(cdrom / "token.txt", render_token_txt(token), 0o600)
        _write_atomic(cdrom / "context.sh", render_context_sh(context), 0o600)

    def on_vm_delete(self, vm: Vm) -> None:
        with self._vm_lock(vm.id):
            self._deleted.add(vm.id)
            with self._lock:
                info = self._vms.pop(vm.id, None)
            if info is not None:
                self._remove(info["name"])
            shutil.rmtree(self.context_host_dir(vm.id), ignore_errors=True)

    def _remove(self, name: str) -> None:
        try:
            self.runner(["rm", "--force", "--volumes", name])
        except ContainerError as exc:
            log.warning("could not remove %s: %s", name, exc)

    # --------------------------------------------------------- power off / resume
    def _poll(self) -> None:
        while not self._stop.wait(self.options.poll_interval):
            try:
                self.sync()
            except Exception:  # keep polling whatever happens
                log.exception("container sync failed")

    def sync(self) -> None:
        """Stop the containers of VMs that are powered off / stopped / suspended / undeployed
        and start them again when the VM is ACTIVE (resume: like a reboot, one-context runs
        again)."""
        emu = self.emu
        if emu is None:
            return
        from .state import VM_STATE_NAMES

        with self._lock:
            managed = {vm_id: dict(info) for vm_id, info in self._vms.items()}
        for vm_id, info in managed.items():
            vm = emu.store.vms.get(vm_id)
            if vm is None:
                continue
            state = VM_STATE_NAMES[vm.state]
            want = None
            if state in _STOPPED_STATES and info["running"]:
                want = False
            elif vm.state == ACTIVE and vm.lcm_state in _BOOTED_LCM and not info["running"]:
                want = True
            if want is None:
                continue
            with self._vm_lock(vm_id):
                if vm_id not in self._vms:
                    continue
                try:
                    self.runner(["start" if want else "stop", info["name"]])
                except ContainerError as exc:
                    log.warning("VM %s: %s", vm_id, exc)
                    continue
                with self._lock:
                    if vm_id in self._vms:
                        self._vms[vm_id]["running"] = want
                log.info("VM %s: container %s", vm_id, "started" if want else "stopped")

    # ---------------------------------------------------------------------- close
    def close(self) -> None:
        """Remove the containers of this run (unless ``keep``), a network it created and a
        temporary context directory."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        if not self.options.keep:
            try:
                names = self.runner(
                    [
                        "ps",
                        "--all",
                        "--quiet",
                        f"--filter=label={LABEL}.run={self.options.run_id}",
                    ]
                ).split()
            except ContainerError as exc:
                log.warning("could not list the containers of this run: %s", exc)
                names = []
            for name in names:
                self._remove(name)
            with self._lock:
                self._vms.clear()
            if self._own_network:
                try:
                    self.runner(["network", "rm", self.options.network])
                except ContainerError as exc:
                    log.warning("could not remove network %s: %s", self.options.network, exc)
        if self._own_context_dir:
            shutil.rmtree(self.context_dir, ignore_errors=True)


def parse_mapping(values: Sequence[str], what: str) -> dict[str, str]:
    """``["NAME=IMAGE", ...]`` (CLI) → dict; raises ValueError on a malformed entry."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{what}: expected NAME=DOCKER_IMAGE, got {item!r}")
        out[key] = value
    return out


__all__ = [
    "CDROM_PATH",
    "ContainerBackend",
    "ContainerError",
    "ContainerOptions",
    "container_name",
    "parse_mapping",
    "render_context_sh",
    "render_token_txt",
    "run_arguments",
    "select_image",
]
