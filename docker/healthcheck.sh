#!/usr/bin/env bash
# The AgentIdP image's HEALTHCHECK: exits 0 when GET /healthz on the server's
# own address (IDP_BIND, default 127.0.0.1:8080) answers 200. Plain bash
# (/dev/tcp), because the slim runtime image has neither curl nor wget.
set -euo pipefail

bind="${IDP_BIND:-127.0.0.1:8080}"
port="${bind##*:}"
host="${bind%:*}"
host="${host#[}"
host="${host%]}"
# A wildcard bind is reached on loopback.
case "$host" in
    0.0.0.0 | "" ) host=127.0.0.1 ;;
    :: ) host=::1 ;;
esac

exec 3<>"/dev/tcp/${host}/${port}"
printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
IFS= read -r -t 3 status_line <&3
[[ "$status_line" =~ ^HTTP/1\.[01]\ 200\  ]]
