#!/usr/bin/env python3
"""Block and network throughput of a microVM, with the host CPU time the VMM spent per GiB.

Runs any VMM that speaks the Firecracker API (`VMM --api-sock PATH`): boots a guest whose
/init runs the workloads and prints markers on the serial console; the host samples the VMM
process's CPU time (utime + stime from /proc/PID/stat) and the wall clock at each marker.

Workloads (sizes set by --size-mib):
  block-read   dd if=/dev/vdb of=/dev/null bs=1M iflag=direct     (sequential read)
  block-write  dd if=/dev/zero of=/dev/vdb bs=1M oflag=direct      (sequential write)
  net-tx       guest -> host TCP over the tap (busybox nc into a host socket sink)
  net-rx       host -> guest TCP over the tap (host sends, guest nc -l discards)

Needs root (tap, mkfs), busybox-static and e2fsprogs, and a guest kernel with virtio-mmio,
virtio-blk, virtio-net, ext4 and the 8250 console built in (the kernel-config output).

  sudo vmm/devices/bench/devices_bench.py --vmm target/release/vmm --kernel vmlinux
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST_IP, GUEST_IP = "172.16.250.1", "172.16.250.2"
TX_PORT, RX_PORT = 5201, 5202
TICKS = os.sysconf("SC_CLK_TCK")

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
ip link set lo up; ip link set eth0 up; ip addr add {guest}/30 dev eth0
M={mib}
mark() {{ echo "BENCH $1"; }}
sleep 1
mark block-read-start
dd if=/dev/vdb of=/dev/null bs=1M count=$M iflag=direct 2>/dev/null
mark block-read-end
mark block-write-start
dd if=/dev/zero of=/dev/vdb bs=1M count=$M oflag=direct conv=fsync 2>/dev/null
mark block-write-end
mark net-tx-start
dd if=/dev/zero bs=64k count=$((M*16)) 2>/dev/null | nc {host} {tx}
mark net-tx-end
nc -l -p {rx} > /dev/null &
sleep 1
mark net-rx-ready
wait
mark net-rx-end
mark done
reboot -f
"""


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def api(sock, method, path, body):
    conn = UnixHTTPConnection(sock)
    conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    text = resp.read().decode()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: {resp.status} {text}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def build_rootfs(work, mib):
    root = os.path.join(work, "root")
    for d in ("bin", "proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(root, "bin/busybox"))
    init = os.path.join(root, "init")
    with open(init, "w") as f:
        f.write(INIT.format(guest=GUEST_IP, host=HOST_IP, mib=mib, tx=TX_PORT, rx=RX_PORT))
    os.chmod(init, 0o755)
    img = os.path.join(work, "rootfs.ext4")
    sh("truncate", "-s", "64M", img)
    sh("mkfs.ext4", "-q", "-F", "-d", root, img)
    scratch = os.path.join(work, "scratch.img")
    with open(scratch, "wb") as f:
        f.truncate(mib << 20)
    return img, scratch


def tx_receiver(result):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST_IP, TX_PORT))
    srv.listen(1)
    srv.settimeout(600)
    conn, _ = srv.accept()
    total = 0
    while True:
        b = conn.recv(1 << 20)
        if not b:
            break
        total += len(b)
    result["tx_bytes"] = total
    conn.close()
    srv.close()


def rx_sender(mib, result):
    s = socket.create_connection((GUEST_IP, RX_PORT), timeout=60)
    chunk = b"\0" * (1 << 20)
    for _ in range(mib):
        s.sendall(chunk)
    result["rx_bytes"] = mib << 20
    s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vmm", required=True, help="VMM binary speaking the Firecracker API")
    p.add_argument("--kernel", required=True, help="guest vmlinux")
    p.add_argument("--size-mib", type=int, default=512, help="data moved per workload")
    p.add_argument("--mem-mib", type=int, default=512)
    p.add_argument("--tap", default="benchtap0")
    p.add_argument("--boot-args", default="console=ttyS0 reboot=k panic=1 pci=off init=/init")
    a = p.parse_args()

    work = tempfile.mkdtemp(prefix="devices-bench-")
    rootfs, scratch = build_rootfs(work, a.size_mib)
    sh("ip", "tuntap", "add", "dev", a.tap, "mode", "tap")
    vmm = None
    try:
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", a.tap)
        sh("ip", "link", "set", a.tap, "up")
        sock = os.path.join(work, "api.sock")
        vmm = subprocess.Popen([a.vmm, "--api-sock", sock], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, text=True)
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        api(sock, "PUT", "/boot-source", {"kernel_image_path": a.kernel, "boot_args": a.boot_args})
        api(sock, "PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": a.mem_mib})
        api(sock, "PUT", "/drives/rootfs", {"drive_id": "rootfs", "path_on_host": rootfs,
                                            "is_root_device": True, "is_read_only": False})
        api(sock, "PUT", "/drives/scratch", {"drive_id": "scratch", "path_on_host": scratch,
                                             "is_root_device": False, "is_read_only": False})
        api(sock, "PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": a.tap,
                                                      "guest_mac": "06:00:ac:10:fa:02"})
        result = {}
        threading.Thread(target=tx_receiver, args=(result,), daemon=True).start()
        api(sock, "PUT", "/actions", {"action_type": "InstanceStart"})

        marks = {}
        sender = None
        for line in vmm.stdout:
            if not line.startswith("BENCH "):
                continue
            name = line.split()[1]
            marks[name] = (time.monotonic(), cpu_seconds(vmm.pid))
            if name == "net-rx-ready":
                marks["net-rx-start"] = marks[name]
                sender = threading.Thread(target=rx_sender, args=(a.size_mib, result))
                sender.start()
            if name == "done":
                break
        vmm.wait(timeout=60)
        if sender:
            sender.join()
    finally:
        if vmm and vmm.poll() is None:
            vmm.kill()
        subprocess.run(["ip", "link", "del", a.tap], check=False)
        shutil.rmtree(work, ignore_errors=True)

    gib = a.size_mib / 1024
    print(f"{'workload':<12} {'MiB/s':>9} {'vmm CPU s/GiB':>14}")
    for w in ("block-read", "block-write", "net-tx", "net-rx"):
        if f"{w}-start" not in marks or f"{w}-end" not in marks:
            print(f"{w:<12} {'n/a':>9} {'n/a':>14}")
            continue
        (t0, c0), (t1, c1) = marks[f"{w}-start"], marks[f"{w}-end"]
        print(f"{w:<12} {a.size_mib / (t1 - t0):>9.1f} {(c1 - c0) / gib:>14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
