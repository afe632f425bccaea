# Shared shell helpers for the project's scripts: timed phases with a summary.
PHASES=()
phase() {
    local name=$1; shift
    local start=$SECONDS
    printf '\n=== %s\n' "$name"
    "$@"
    local took=$((SECONDS - start))
    PHASES+=("$(printf '%-40s %5ss' "$name" "$took")")
    printf '=== %s: %ss\n' "$name" "$took"
}
summary() {
    printf '\n=== phase durations\n'
    printf '%s\n' "${PHASES[@]}"
}
