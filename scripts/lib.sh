# Shared shell helpers for the project's scripts: timed phases with a summary.
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
