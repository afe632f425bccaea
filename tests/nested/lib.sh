# Shared settings of the nested KVM host scripts (sourced).
# The host kernel: Debian's cloud kernel (installed by scripts/install-deps).
NESTED_KVER=${NESTED_KVER:-$(basename "$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -1)" | sed 's/^vmlinuz-//')}
NESTED_KERNEL=/boot/vmlinuz-$NESTED_KVER
NESTED_CACHE=${NESTED_CACHE:-/var/cache/kvm-tests}

nested_log() { printf 'nested: %s\n' "$*" >&2; }

# Installs the packages the nested host needs when one is missing.
nested_deps() {
    local pkgs=(qemu-system-x86 linux-image-cloud-amd64 busybox-static e2fsprogs cpio kmod lz4 nftables iproute2 curl socat)
    local missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        nested_log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
        NESTED_KVER=$(basename "$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -1)" | sed 's/^vmlinuz-//')
        NESTED_KERNEL=/boot/vmlinuz-$NESTED_KVER
    fi
}

# copy_with_libs ROOT FILE...: copies executables and the shared libraries they load
# (per ldd) into ROOT at the same paths.
copy_with_libs() {
    local root=$1 f lib
    shift
    for f in "$@"; do
        mkdir -p "$root$(dirname "$f")"
        cp -L "$f" "$root$f"
        for lib in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do
            [ -e "$root$lib" ] && continue
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
    done
}
