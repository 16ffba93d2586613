#!/usr/bin/env bash
# Merge the figures of the bakes and boot checks into .cache/bake/report.json and print them.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 - .cache/bake <<'PY'
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
report = {}
for kind in ("report", "check"):
    for f in sorted(d.glob(f"{kind}-*.json")):
        fig = json.loads(f.read_text())
        report.setdefault(fig["appliance"], {})["bake" if kind == "report" else "boot_check"] = fig
(d / "report.json").write_text(json.dumps(report, indent=2) + "\n")
print(f"{'appliance':<10} {'bake s':>7} {'virtual GiB':>11} {'actual MiB':>10} {'configured':>10} {'power-on to configured s':>24}")
for name, r in report.items():
    b, c = r.get("bake", {}), r.get("boot_check", {})
    g = lambda d, k: "-" if d.get(k) is None else str(d[k])
    print(f"{name:<10} {g(b, 'bake_wall_s'):>7} {g(b, 'virtual_size_gib'):>11} {g(b, 'actual_size_mib'):>10} "
          f"{g(c, 'configured'):>10} {g(c, 'boot_to_configured_s'):>24}")
print(f"({d / 'report.json'})")
PY
