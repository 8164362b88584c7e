#!/usr/bin/env bash
# Entry point for `make integration` (which runs every integration/*/run.sh) and
# `make integration-migration`: the live-migration tests on the two-host bed, with runc as the
# baseline, $RUNTIME_BIN moved by hand, and $RUNTIME_BIN moved by its own `migrate` command.
# The bed is built and removed by test.sh itself. Needs root.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$HERE/test.sh" "$@"
