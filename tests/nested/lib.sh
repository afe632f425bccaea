# The nested KVM host's settings and helpers (bash, sourced by the scripts beside this
# file: boot, run, host-initramfs, payload). (scripts/lib.sh is the timed phases of
# ./quickstart and ./run-tests; tests/scenarios/task-e2e/lib.sh the driver's side of an
# end-to-end task run.)
NESTED_REPO=$(readlink -f "$(dirname "${BASH_SOURCE[0]}")/../..")
# The host kernel: Debian's cloud kernel (scripts/install-deps, group nested).
nested_kver() { basename "$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -1)" | sed 's/^vmlinuz-//'; }
NESTED_KVER=${NESTED_KVER:-$(nested_kver)}
NESTED_KERNEL=/boot/vmlinuz-$NESTED_KVER
NESTED_CACHE=${NESTED_CACHE:-/var/cache/kvm-tests}

nested_log() { printf 'nested: %s\n' "$*" >&2; }

# Installs the packages the nested host needs when one is missing (the nested group of
# scripts/install-deps; its output goes to stderr), then finds the host kernel again if
# it was not there before.
nested_deps() {
    "$NESTED_REPO/scripts/install-deps" --quiet nested >&2
    if [ ! -e "$NESTED_KERNEL" ]; then
        NESTED_KVER=$(nested_kver)
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
