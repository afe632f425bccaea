#!/usr/bin/env bash
# Boots a Linux guest through jailer + vmm inside the nested KVM host, with a drive and
# a tap in a network namespace (the issue's end-to-end check; run by hand until the
# kvm-tests harness carries it):
#
#   jailer/tests/nested-boot.sh <release-dir>
#
# <release-dir> holds STATIC `vmm` and `jailer` binaries (the jail has no libraries):
#   RUSTFLAGS="-C target-feature=+crt-static" \
#     cargo build --release -p vmm -p jailer --target x86_64-unknown-linux-gnu
#   jailer/tests/nested-boot.sh "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release"
# Exits 0 when the guest reached its init, rebooted, and everything was cleaned up.
# NESTED_BOOT_NO_DEVICES=1 leaves the drive and the tap out of the vmm's config (for a
# vmm that does not support them yet).
set -euo pipefail
repo=$(readlink -f "$(dirname "$(readlink -f "$0")")/../..")
release=$(readlink -f "$1")
for b in vmm jailer; do
    if ! ldd "$release/$b" 2>&1 | grep -q 'statically linked\|not a dynamic'; then
        echo "nested-boot: $release/$b is dynamically linked; build it static" >&2
        exit 2
    fi
done
pl=$(mktemp -d)
trap 'rm -rf "$pl"' EXIT
KVM_TESTS_BINARIES="vmm jailer" "$repo/tests/nested/payload" "$pl" "$release" >/dev/null
cat >"$pl/scenario.sh" <<'SCENARIO'
set -eu
NO_DEVICES=@NO_DEVICES@
IP=/usr/sbin/ip  # iproute2 (busybox ip has no netns/tuntap)
ID=boot-$$
VMM_UID=5123
ROOT=/srv/jailer/vmm/$ID/root
# The task's network: a netns with a tap the vmm's uid may attach to (no CAP_NET_ADMIN
# in the jail: TUNSETIFF on a persistent tap needs its owner).
$IP netns add task-$ID
$IP netns exec task-$ID $IP tuntap add dev tap0 mode tap user $VMM_UID group $VMM_UID
$IP netns exec task-$ID $IP link set tap0 up
# The host prepares the jail: kernel, initrd, a drive the vmm's uid may write, config.
mkdir -p "$ROOT"
cp /payload/guest/vmlinux /payload/guest/initramfs.cpio.gz /payload/guest/rootfs.ext4 "$ROOT/"
chown $VMM_UID:$VMM_UID "$ROOT/rootfs.ext4"
args="console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd"
[ "$(cat /payload/guest/kernel-origin)" = debian-cloud ] && args="$args pci=off"
DEVICES=',
 "drives": [{"drive_id": "data", "path_on_host": "/rootfs.ext4",
   "is_root_device": false, "is_read_only": false}],
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
   "guest_mac": "06:00:ac:10:00:02"}]'
[ "$NO_DEVICES" = 1 ] && DEVICES=
cat >"$ROOT/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "/vmlinux", "initrd_path": "/initramfs.cpio.gz",
   "boot_args": "$args"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 256}
$DEVICES}
JSON
set -o pipefail
rc=0
timeout -s KILL 300 jailer --id $ID --exec-file /payload/bin/vmm --uid $VMM_UID --gid $VMM_UID \
    --netns /run/netns/task-$ID --new-pid-ns --cgroup-version 2 \
    --cgroup "cpu.max=100000 100000" --cgroup memory.max=402653184 \
    -- --no-api --config-file /vm.json --level Info 2>&1 | tee "$SCRATCH/vmm.out" || rc=$?
echo "nested-boot: jailer exit status $rc"
ok=0
grep -q "guest-init:" "$SCRATCH/vmm.out" || { echo "nested-boot: guest did not reach init"; ok=1; }
[ $rc -eq 0 ] || ok=1
jailer --cleanup --id $ID --exec-file vmm
$IP netns del task-$ID
if [ -e /srv/jailer/vmm/$ID ] || [ -e /sys/fs/cgroup/vmm/$ID ]; then
    echo "nested-boot: cleanup left the jail behind"; ok=1
fi
exit $ok
SCENARIO
sed -i "s/@NO_DEVICES@/${NESTED_BOOT_NO_DEVICES:-0}/" "$pl/scenario.sh"
"$repo/tests/nested/run" "$pl" sh /payload/scenario.sh
