# Timed phases with a summary, for the two top-level commands ./quickstart and ./run-tests
# (bash, sourced). (tests/nested/lib.sh is the nested KVM host's settings;
# tests/scenarios/task-e2e/lib.sh the driver's side of an end-to-end task run.)
PHASES=()
# phase NAME CMD...: runs CMD, records its duration, returns its status (under set -e a
# failing phase ends the script unless the caller writes `phase ... || ...`).
phase() {
    local name=$1; shift
    local start=$SECONDS st=0
    printf '\n=== %s\n' "$name"
    "$@" || st=$?
    local took=$((SECONDS - start))
    PHASES+=("$(printf '%-45s %5ss%s' "$name" "$took" "$([ $st = 0 ] || echo "  FAILED ($st)")")")
    printf '=== %s: %ss\n' "$name" "$took"
    return "$st"
}
summary() {
    printf '\n=== phase durations\n'
    printf '%s\n' "${PHASES[@]}"
}
