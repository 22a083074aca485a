#!/usr/bin/env bash
# `just bench [OPTIONS]`: builds the release server and the driver, installs
# wrk if it is missing, then runs the driver (bench/README.md; options:
# `just bench --help`). `--compare OLD.json NEW.json` only builds the driver.
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

if [[ " $* " == *" --compare "* || " $* " == *" --help "* || " $* " == *" -h "* ]]; then
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

# 3. The micro-benchmarks, the deployments, the table.
exec "${TARGET_DIR}/release/idp-bench" "$@"
