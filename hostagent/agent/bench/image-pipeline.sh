#!/bin/sh
# Image pipeline benchmark: pull + unpack + ext4 build time of the busybox image from a
# local docker-registry, cold (empty layer cache) and cached. Needs root, docker-registry,
# umoci, skopeo, e2fsprogs.
set -eu
cd "$(dirname "$0")/../../.."
exec cargo bench -p hostagent --bench image_pipeline "$@"
