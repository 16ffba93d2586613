"""``python -m opennebula_emulator --host 127.0.0.1 --oned-port 2633 ...``"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .core import Timings
from .faults import Fault
from .server import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opennebula_emulator", description=__doc__)
    parser.add_argument(
        "--host",
        help="address to listen on (default 127.0.0.1; with --containers the network's gateway)",
    )
    parser.add_argument("--oned-port", type=int, default=2633)
    parser.add_argument("--oneflow-port", type=int, default=2474)
    parser.add_argument("--onegate-port", type=int, default=5030)
    parser.add_argument(
        "--state", metavar="FILE.json", help="load this state if it exists, save it on exit"
    )
    parser.add_argument(
        "--seed", type=int, help="seed for TOKEN_PASSWORDs, UUIDs and monitoring values"
    )
    parser.add_argument(
        "--version", choices=["7.0", "6.10"], default="7.0", help="OpenNebula version to emulate"
    )
    parser.add_argument(
        "--admin-password", default="password", help="password of oneadmin (default: password)"
    )
    parser.add_argument("--onegate-endpoint", help="ONEGATE_ENDPOINT written into VM contexts")
    parser.add_argument(
        "--pool", type=int, default=0, metavar="N", help="create N running plain VMs"
    )
    parser.add_argument(
        "--large-pool",
        nargs=2,
        type=int,
        metavar=("TOTAL", "SERVICE_VMS"),
        help="create TOTAL running VMs, SERVICE_VMS of them in one OneFlow service",
    )
    parser.add_argument("--fast", action="store_true", help="near-zero delays (tests)")
    parser.add_argument("--vm-step", type=float, help="seconds per VM state step (default 1)")
    parser.add_argument("--cooldown-scale", type=float, help="factor applied to role cooldowns")
    parser.add_argument(
        "--no-auto-boot", action="store_true", help="VMs wait in PENDING for /_emulator/vms/ID/boot"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="[before:]API:ROUTE[=KIND][*TIMES]",
        help="answer TIMES (1) requests of ROUTE (as in the counters) with KIND: 502 (default), "
        "503, 504 or drop (close the connection), after handling them (before: instead); "
        "e.g. 'oneflow:POST /service_template/:id/action=502' (repeatable)",
    )
    group = parser.add_argument_group(
        "container backend", "run every VM as a systemd container (needs the docker CLI)"
    )
    group.add_argument("--containers", action="store_true", help="enable the container backend")
    group.add_argument(
        "--network", default="bridge", help="Docker network of the VMs (created when missing)"
    )
    group.add_argument(
        "--appliance",
        action="append",
        default=[],
        metavar="IMAGE_NAME=DOCKER_IMAGE",
        help="container image of VMs whose DISK is the image IMAGE_NAME (repeatable)",
    )
    group.add_argument(
        "--template-image",
        action="append",
        default=[],
        metavar="TEMPLATE_NAME=DOCKER_IMAGE",
        help="container image of VMs of a VM template without a mapped disk (repeatable)",
    )
    group.add_argument("--default-image", help="container image of every other VM")
    group.add_argument("--name-prefix", help="container names: PREFIX-vm-ID")
    group.add_argument("--context-dir", help="host directory of the context CD-ROMs")
    group.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="SRC:DST[:ro]",
        help="extra docker run --volume of every VM container (repeatable)",
    )
    group.add_argument(
        "--keep-containers", action="store_true", help="leave the containers behind on exit"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s"
    )
    try:
        faults = [Fault.parse(spec) for spec in args.fault]
    except ValueError as exc:
        parser.error(f"--fault: {exc}")
    timings = Timings.fast() if args.fast else Timings()
    if args.vm_step is not None:
        timings.vm_step = args.vm_step
    if args.cooldown_scale is not None:
        timings.cooldown_scale = args.cooldown_scale
    containers = None
    if args.containers:
        from .containers import ContainerOptions, parse_mapping

        try:
            containers = ContainerOptions(
                network=args.network,
                appliances=parse_mapping(args.appliance, "--appliance"),
                templates=parse_mapping(args.template_image, "--template-image"),
                default_image=args.default_image,
                name_prefix=args.name_prefix,
                context_dir=args.context_dir,
                volumes=args.volume,
                keep=args.keep_containers,
            )
        except ValueError as exc:
            parser.error(str(exc))
    emu = Emulator(
        args.host,
        args.oned_port,
        args.oneflow_port,
        args.onegate_port,
        version=args.version,
        timings=timings,
        seed=args.seed,
        auto_boot=not args.no_auto_boot,
        onegate_endpoint=args.onegate_endpoint,
        admin_password=args.admin_password,
        state_file=args.state,
        containers=containers,
    )
    for fault in faults:
        emu.rt.faults.add(fault)
    if args.pool:
        emu.add_vm_pool(args.pool)
    if args.large_pool:
        emu.add_large_pool(*args.large_pool)
    emu.start()
    print(f"oned     {emu.oned_url}", flush=True)
    print(f"oneflow  {emu.oneflow_url}", flush=True)
    print(f"onegate  {emu.onegate_url}", flush=True)
    if emu.containers is not None:
        print(
            f"vms      containers {emu.containers.options.prefix}-vm-ID "
            f"on {emu.containers.options.network}",
            flush=True,
        )
    print("counters GET /_emulator/counters on any of them; Ctrl-C to stop", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
