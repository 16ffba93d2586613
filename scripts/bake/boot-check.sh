#!/usr/bin/env bash
# Boot a baked appliance image once (QEMU, -snapshot) and show that its boot hook configures it
# from the OpenNebula context:
#   scripts/bake/boot-check.sh superlink|supernode
# 1. A throwaway raw copy of the image gets the build key (the bake removed every key: on
#    OpenNebula one-context installs the owner's SSH_PUBLIC_KEY).
# 2. The context reaches /run/one-context/one_env (mode 0400, `export KEY="value"` lines:
#    TOKENTXT, VMID, ONEGATE_ENDPOINT, then the context variables, as one-context's
#    loc-16-gen-env writes them) in one of two ways, BAKE_CHECK_CONTEXT:
#      cdrom (default)  a context ISO (label CONTEXT: context.sh, token.txt) as OpenNebula
#                       attaches it; the image's one-context writes one_env at boot and the
#                       boot hook (flower-appliance.service, After=one-context) runs by itself
#      ssh              no ISO; one_env is written over SSH once the VM is up, then the boot
#                       hook is restarted (for an image without one-context)
#    OneGate is the project's emulator on this machine (one running VM, its token in the
#    context), reached through QEMU's user network at 10.0.2.2.
# 3. SuperLink: the Fleet API answers TLS on 9092 (certificate shown) and the VM published
#    FL_READY=YES (with FL_ENDPOINT, FL_CA_CERT, ...) through OneGate.
#    SuperNode: TLS on, trusting the CA given in ONEAPP_FL_SSL_CA_CERTFILE, with a static
#    ONEAPP_FL_SUPERLINK_ADDRESS (a SuperLink container on this machine serving a certificate
#    for 10.0.2.2), it registers with that SuperLink and publishes FL_NODE_READY=YES.
# Figures go to .cache/bake/check-<appliance>.json. Environment: BAKE_ACCELERATOR (as for bake.sh),
# BAKE_CPUS (2), BAKE_MEMORY (2048), BAKE_CHECK_TIMEOUT (2400 s), FLOWER_TEST_ID (names).
set -euo pipefail
# shellcheck source=scripts/bake/common.sh
source "$(dirname "$0")/common.sh"
IMAGE=$CACHE/output/$APPLIANCE/flower-$APPLIANCE.qcow2
KEY=$CACHE/keys/id_ed25519
ACCEL=$BAKE_ACCELERATOR
MODE=${BAKE_CHECK_CONTEXT:-cdrom}
TIMEOUT=${BAKE_CHECK_TIMEOUT:-2400}
ID=${FLOWER_TEST_ID:-$$}
HOST_SUPERLINK=flower-bake-superlink-$ID
[ -f "$IMAGE" ] || { echo "no image: $IMAGE (make bake)" >&2; exit 1; }

log() { printf '\033[1m== %s\033[0m\n' "$*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$1" "$2"; }

WORK=$(mktemp -d "$CACHE/check.XXXXXX")
LOOP=
QEMU_PID=
EMU_PID=
cleanup() {
  set +e
  [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null
  if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill "$QEMU_PID"
    for _ in $(seq 1 20); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.5; done
  fi
  mountpoint -q "$WORK/mnt" && umount "$WORK/mnt"
  if [ -n "$LOOP" ]; then
    partx -d "$LOOP" 2>/dev/null
    losetup -d "$LOOP"
  fi
  docker rm -f "$HOST_SUPERLINK" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SSH_PORT=$(free_port)
FLEET_PORT=$(free_port)
SSH=(ssh -q -i "$KEY" -p "$SSH_PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o ConnectTimeout=5 -o BatchMode=yes root@127.0.0.1)

log "copy of $IMAGE with the build key"
t=$(now)
qemu-img convert -O raw "$IMAGE" "$WORK/disk.raw"
LOOP=$(losetup -f --show "$WORK/disk.raw")
partx -a "$LOOP"
mkdir "$WORK/mnt"
mount "${LOOP}p1" "$WORK/mnt"
install -d -m 0700 "$WORK/mnt/root/.ssh"
install -m 0600 "$KEY.pub" "$WORK/mnt/root/.ssh/authorized_keys"
umount "$WORK/mnt"
partx -d "$LOOP"
losetup -d "$LOOP"
LOOP=
echo "   $(since "$t" "$(now)") s"

log "OneGate: the emulator with one running VM"
ONEGATE_PORT=$(free_port)
"$REPO/.venv/bin/python" -m opennebula_emulator --pool 1 --oned-port "$(free_port)" \
  --oneflow-port "$(free_port)" --onegate-port "$ONEGATE_PORT" \
  --onegate-endpoint "http://10.0.2.2:$ONEGATE_PORT" >"$WORK/emulator.log" 2>&1 &
EMU_PID=$!
for _ in $(seq 1 60); do
  VM_CONTEXT=$(curl -sf "http://127.0.0.1:$ONEGATE_PORT/_emulator/vms/0/context") && break
  sleep 0.5
done
[ -n "${VM_CONTEXT:-}" ] || { cat "$WORK/emulator.log" >&2; exit 1; }
# TOKENTXT, VMID and ONEGATE_ENDPOINT as OpenNebula puts them in the context.
mapfile -t CONTEXT < <(python3 -c 'import json, sys
for k, v in json.load(sys.stdin).items(): print(f"{k}={v}")' <<<"$VM_CONTEXT")
TOKEN=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["TOKENTXT"])' <<<"$VM_CONTEXT")
onegate_vm() {
  curl -sf -H "X-ONEGATE-TOKEN: $TOKEN" -H "X-ONEGATE-VMID: 0" "http://127.0.0.1:$ONEGATE_PORT/vm"
}
# The published key that says the boot hook finished: FL_READY / FL_NODE_READY.
published() {
  onegate_vm | python3 -c 'import json, sys
t = json.load(sys.stdin)["VM"]["USER_TEMPLATE"]
sys.exit(t.get(sys.argv[1]) != "YES")' "$1" 2>/dev/null
}

CONTEXT+=("ONEAPP_FLOWER_VERSION=$FLOWER_VERSION" ONEAPP_FL_LOG_LEVEL=INFO ONEAPP_FL_TLS_ENABLED=YES)
if [ "$APPLIANCE" = superlink ]; then
  READY_KEY=FL_READY
  CONTEXT+=("ONEAPP_FL_CERT_EXTRA_SAN=IP:127.0.0.1")
else
  READY_KEY=FL_NODE_READY
  # A SuperLink for the SuperNode to connect to, on this machine, with a certificate for the
  # address the guest knows it by; its CA reaches the SuperNode in ONEAPP_FL_SSL_CA_CERTFILE.
  CERTS=$WORK/certs
  mkdir -m 0755 "$CERTS"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$WORK/ca.key" -out "$CERTS/ca.crt" -days 1 \
    -subj /CN=flower-bake-check-ca 2>/dev/null
  openssl req "${ec[@]}" -keyout "$CERTS/server.key" -out "$WORK/server.csr" \
    -subj /CN=flower-bake-check-superlink 2>/dev/null
  openssl x509 -req -in "$WORK/server.csr" -CA "$CERTS/ca.crt" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 1 -out "$CERTS/server.pem" \
    -extfile <(echo subjectAltName=IP:10.0.2.2,IP:127.0.0.1) 2>/dev/null
  chmod 0644 "$CERTS/server.key" # a throwaway key the container's user (49999) must read
  HOST_PORT=$(free_port)
  docker run -d --name "$HOST_SUPERLINK" -p "127.0.0.1:$HOST_PORT:9092" -v "$CERTS:/certs:ro" \
    "localhost/flower-superlink:$FLOWER_VERSION-sklearn" --ssl-ca-certfile /certs/ca.crt \
    --ssl-certfile /certs/server.pem --ssl-keyfile /certs/server.key >/dev/null
  CONTEXT+=("ONEAPP_FL_SUPERLINK_ADDRESS=10.0.2.2:$HOST_PORT"
    "ONEAPP_FL_SSL_CA_CERTFILE=$(base64 -w0 "$CERTS/ca.crt")"
    "ONEAPP_FL_NODE_CONFIG=partition-id=0 num-partitions=1")
fi

DRIVES=(-drive "file=$WORK/disk.raw,format=raw,if=virtio")
if [ "$MODE" = cdrom ]; then
  # As OpenNebula makes it: context.sh with KEY='value' lines, the OneGate token apart.
  mkdir "$WORK/context"
  {
    echo "# Context variables generated by OpenNebula"
    for kv in "${CONTEXT[@]}"; do
      case ${kv%%=*} in TOKENTXT) ;; *) printf "%s='%s'\n" "${kv%%=*}" "${kv#*=}" ;; esac
    done
    echo "TOKEN='YES'"
  } >"$WORK/context/context.sh"
  printf "%s\n" "$TOKEN" >"$WORK/context/token.txt"
  genisoimage -quiet -V CONTEXT -J -R -o "$WORK/context.iso" "$WORK/context"
  # A virtio disk rather than a CD-ROM drive: the cloud kernel surely has virtio-blk.
  DRIVES+=(-drive "file=$WORK/context.iso,format=raw,if=virtio,readonly=on")
fi

log "boot (accelerator $ACCEL, context by $MODE; serial console: $CACHE/logs/$APPLIANCE.check-serial.log)"
mkdir -p "$CACHE/logs"
cpu=max
[ "$ACCEL" = kvm ] && cpu=host
t_boot=$(now)
qemu-system-x86_64 -machine "q35,accel=$ACCEL" -cpu "$cpu" -smp "${BAKE_CPUS:-2}" -m "${BAKE_MEMORY:-2048}" \
  -snapshot "${DRIVES[@]}" \
  -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22,hostfwd=tcp:127.0.0.1:$FLEET_PORT-:9092" \
  -device virtio-net-pci,netdev=n0 -display none -serial "file:$CACHE/logs/$APPLIANCE.check-serial.log" \
  -pidfile "$WORK/qemu.pid" -daemonize
QEMU_PID=$(cat "$WORK/qemu.pid")
deadline=$(($(date +%s) + TIMEOUT))

wait_ssh() {
  until "${SSH[@]}" true 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "no SSH within ${TIMEOUT} s" >&2; return 1; }
    sleep 2
  done
}

configured() {
  if [ "$APPLIANCE" = superlink ]; then
    echo | timeout 10 openssl s_client -connect "127.0.0.1:$FLEET_PORT" 2>/dev/null \
      | openssl x509 -noout -subject -issuer -ext subjectAltName >"$WORK/cert.txt" 2>/dev/null \
      || return 1
  else
    # Not `docker logs | grep -q`: under pipefail, grep's early exit fails the pipe (SIGPIPE).
    grep -q 'Fleet.ActivateNode\] Activated' <(docker logs "$HOST_SUPERLINK" 2>&1) || return 1
  fi
  published "$READY_KEY"
}

t_ssh=
if [ "$MODE" = ssh ]; then
  wait_ssh
  t_ssh=$(now)
  echo "   SSH after $(since "$t_boot" "$t_ssh") s"
  log "/run/one-context/one_env over SSH (as one-context writes it)"
  env_text=$(for kv in "${CONTEXT[@]}"; do printf 'export %s="%s"\n' "${kv%%=*}" "${kv#*=}"; done)
  printf '%s\n' "$env_text" | "${SSH[@]}" 'install -d -m 0755 /run/one-context && umask 0377 &&
    cat >/run/one-context/one_env.new && mv /run/one-context/one_env.new /run/one-context/one_env'
  log "systemctl restart flower-appliance.service"
  "${SSH[@]}" 'systemctl restart flower-appliance.service' || true
fi

log "waiting for the appliance to be configured (at most ${TIMEOUT} s)"
ok=false
until configured && ok=true; do
  if [ "$(date +%s)" -ge "$deadline" ] || ! kill -0 "$QEMU_PID" 2>/dev/null; then break; fi
  sleep 3
done
t_ok=$(now)
echo "   configured: $ok, $(since "$t_boot" "$t_ok") s after power-on"

if wait_ssh; then
  [ -n "$t_ssh" ] || t_ssh=$(now)
  log "inside the VM"
  "${SSH[@]}" bash -s <<'SH' || true
set -x
ls -l /run/one-context/
sed 's/^export TOKENTXT=.*/export TOKENTXT="(hidden)"/' /run/one-context/one_env
systemctl --no-pager show -p ActiveState,Result,ExecMainStartTimestamp,ExecMainExitTimestamp one-context.service flower-appliance.service
journalctl -b -u one-context.service --no-pager -o cat | tail -3
journalctl -b -u flower-appliance.service --no-pager -o cat | grep -E 'PLAY RECAP|ok=|fatal|FAILED|WARNING' | tail -8
docker ps --format '{{.Names}}  {{.Image}}  {{.Status}}  {{.Ports}}'
for c in $(docker ps -q); do docker inspect -f '{{.Name}}: {{.Path}} {{join .Args " "}}' "$c"; done
ls /etc/ssh/ssh_host_*_key.pub; cat /etc/machine-id
SH
fi
if [ "$APPLIANCE" = superlink ]; then
  log "Fleet API certificate (TLS on 9092)"
  cat "$WORK/cert.txt"
else
  log "SuperLink on this machine (log tail)"
  docker logs "$HOST_SUPERLINK" 2>&1 | grep -E 'Fleet\.(ActivateNode|PullMessages)' | head -3
fi
log "published through OneGate (GET /vm, USER_TEMPLATE)"
onegate_vm | python3 -c 'import json, sys
for k, v in json.load(sys.stdin)["VM"]["USER_TEMPLATE"].items():
    print(f"   {k}={v[:60] + chr(8230) if len(v) > 60 else v}")' || true
"${SSH[@]}" 'systemctl poweroff' 2>/dev/null || true

python3 - "$CACHE/check-$APPLIANCE.json" "$APPLIANCE" "$MODE" "$ok" "$t_boot" "$t_ssh" "$t_ok" \
  "$ACCEL" "$READY_KEY" <<'PY'
import json, sys
out, appliance, mode, ok, boot, ssh, done, accel, key = sys.argv[1:]
r = lambda a, b: round(float(b) - float(a), 1)
fig = {
    "appliance": appliance,
    "accelerator": accel,
    "context_by": mode,
    "configured": ok == "true",
    "published": key if ok == "true" else None,
    "boot_to_configured_s": r(boot, done),
    "boot_to_ssh_s": r(boot, ssh) if mode == "ssh" else None,
}
json.dump(fig, open(out, "w"), indent=2)
print(json.dumps(fig, indent=2))
PY
[ "$ok" = true ]
