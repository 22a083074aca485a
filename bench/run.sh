#!/usr/bin/env bash
# `just bench [OPTIONS]`: builds the release server and the driver, installs
# wrk if it is missing, then runs the driver (bench/README.md; options:
# `just bench --help`). `--compare OLD.json NEW.json` only builds the driver;
# `--compare` without files runs AgentIdP beside oidc-provider instead
# (bench/compare.sh; options: `just bench --compare --help`).
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

# `--compare` followed by a file compares two result files; followed by nothing
# or by another option it runs the side-by-side comparison.
SIDE_BY_SIDE=0
args=("$@")
for i in "${!args[@]}"; do
    if [[ "${args[$i]}" == --compare ]]; then
        next="${args[$((i + 1))]:-}"
        if [[ -z "$next" || "$next" == -* ]]; then
            SIDE_BY_SIDE=1
        fi
    fi
done
if [[ "$SIDE_BY_SIDE" == 1 && ( " $* " == *" --help "* || " $* " == *" -h "* ) ]]; then
    exec bench/compare.sh --help
fi

if [[ "$SIDE_BY_SIDE" == 0 && ( " $* " == *" --compare "* || " $* " == *" --help "* || " $* " == *" -h "* ) ]]; then
    cargo build --release --quiet -p idp-bench
    exec "${TARGET_DIR}/release/idp-bench" "$@"
fi

# 1. The release binaries (the server under test and the driver).
cargo build --release -p idp-server -p idp-bench

# 2. The load generator, from Debian's packages.
if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk is not installed: installing it (apt-get install -y wrk)" >&2
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
        else
            echo "error: wrk is missing and this user cannot install packages; run: apt-get install -y wrk" >&2
            exit 1
        fi
    fi
    if ! "${SUDO[@]}" apt-get install -y wrk >/dev/null 2>&1; then
        # A fresh machine may have no package lists yet.
        "${SUDO[@]}" apt-get update -qq >/dev/null 2>&1 || true
        if ! "${SUDO[@]}" apt-get install -y wrk >/dev/null; then
            echo "error: could not install wrk; install it by hand (apt-get install -y wrk) and run again" >&2
            exit 1
        fi
    fi
    command -v wrk >/dev/null 2>&1 || { echo "error: wrk is still not on PATH after installing it" >&2; exit 1; }
fi

# 3. `--compare` without files: AgentIdP beside oidc-provider (bench/compare.sh).
if [[ "$SIDE_BY_SIDE" == 1 ]]; then
    exec bench/compare.sh "$@"
fi

# 3. The micro-benchmarks, the deployments, the table.
exec "${TARGET_DIR}/release/idp-bench" "$@"
