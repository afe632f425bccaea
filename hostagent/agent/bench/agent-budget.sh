#!/bin/sh
# Agent memory and CPU per task: 1,000 idle tasks, then a 100-task log flood
# (benches/agent_budget.rs). Prints figures; asserts nothing.
# PROFILE=dev (default here: the figures are then an upper bound) or release.
set -e
cd "$(dirname "$0")/../../.."
exec cargo bench -p hostagent --bench agent_budget --profile "${PROFILE:-dev}" "$@"
