#!/usr/bin/env bash
# `just bench --compare` (no result files): AgentIdP beside panva's oidc-provider,
# in one run on this machine, under the same load (bench/README.md, "Compare with
# oidc-provider").
#
# For each signing algorithm (RS256, then ES256): the peer, oidc-provider from the
# peers' directory (JWT_ALG=<alg>, port 4001), is started and warmed up; then the two
# sides take turns, one run each, --runs times (the machine's speed drifts over
# minutes, and turns give that drift to both sides alike):
#   1. AgentIdP: `idp-bench --deployment postgres --scenario token,introspect --runs 1`
#      (release server on PostgreSQL + Redis with the limits raised, seeded, wrk, RSS
#      and CPU sampled, cleaned up);
#   2. the peer: the peers' own load.sh once (token with client_secret_basic;
#      introspection of an opaque token, the only kind it introspects).
# The peer, idle while AgentIdP runs, is then stopped by PID. Then one table: both sides' req/s and p99, the ratio and the issue's target beside
# it, AgentIdP's RSS and CPU; the same as JSON in bench/results/compare-<time>.json
# (the idp-bench JSON of each AgentIdP run is kept beside it).
#
# Options (defaults):
#   --duration S       seconds of load per run (10)
#   --runs N           runs per scenario and side; the table shows the median (3)
#   --connections N    wrk connections (32)
#   --threads N        wrk threads, the same for both sides (1, as the peers' load.sh)
#   --signing-alg A,B  algorithms to compare (RS256,ES256)
#   --warmup S         seconds of load per scenario before the peer's measured runs (3)
#   --peer-dir DIR     the peers' harness (PEER_DIR, default ../shared/peers from the repo);
#                      without node_modules there, the peer runs from a copy in
#                      target/compare-peers/ installed with `npm ci`
#   --quiet-pct P      before each side wait until the machine is < P % busy (15) ...
#   --quiet-wait S     ... for at most S seconds, then measure anyway with a warning (300)
#   --keep-temp        keep the temporary directory (logs, raw results)
# `--compare` itself is accepted and ignored (run.sh passes it through).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac

DURATION=10
RUNS=3
CONNS=32
THREADS=1
ALGS="RS256,ES256"
WARMUP=3
PEER_DIR="${PEER_DIR:-$ROOT/../shared/peers}"
QUIET_PCT=15
QUIET_WAIT=300
KEEP_TEMP=0
PEER_PORT=4001
ORIG_ARGS="$*"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
need_value() { [[ $# -ge 2 && -n "$2" ]] || { echo "error: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --compare) shift ;;
        --duration) need_value "$@"; DURATION="$2"; shift 2 ;;
        --runs) need_value "$@"; RUNS="$2"; shift 2 ;;
        --connections) need_value "$@"; CONNS="$2"; shift 2 ;;
        --threads) need_value "$@"; THREADS="$2"; shift 2 ;;
        --signing-alg) need_value "$@"; ALGS="$2"; shift 2 ;;
        --warmup) need_value "$@"; WARMUP="$2"; shift 2 ;;
        --peer-dir) need_value "$@"; PEER_DIR="$2"; shift 2 ;;
        --quiet-pct) need_value "$@"; QUIET_PCT="$2"; shift 2 ;;
        --quiet-wait) need_value "$@"; QUIET_WAIT="$2"; shift 2 ;;
        --keep-temp) KEEP_TEMP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (bench/compare.sh --help)" >&2; exit 2 ;;
    esac
done
for v in DURATION RUNS CONNS THREADS WARMUP QUIET_PCT QUIET_WAIT; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "error: $v must be a whole number, not '${!v}'" >&2; exit 2; }
done
(( DURATION >= 1 && RUNS >= 1 && CONNS >= 1 && THREADS >= 1 )) \
    || { echo "error: --duration, --runs, --connections and --threads must be at least 1" >&2; exit 2; }
IFS=', ' read -r -a ALG_LIST <<< "$ALGS"
for alg in "${ALG_LIST[@]}"; do
    case "$alg" in RS256|ES256) ;; *) echo "error: --signing-alg takes RS256 and/or ES256 (both sides support them), not $alg" >&2; exit 2 ;; esac
done

# --- tools -----------------------------------------------------------------------------
for tool in wrk curl python3 node npm cargo; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is not installed (wrk: apt-get install -y wrk; node/npm: Node 20+)" >&2; exit 1; }
done
[[ -x "$PEER_DIR/load.sh" && -f "$PEER_DIR/oidc-provider/server.js" ]] \
    || { echo "error: no peers' harness in $PEER_DIR (load.sh, oidc-provider/server.js); set PEER_DIR or --peer-dir" >&2; exit 1; }
PEER_DIR="$(cd "$PEER_DIR" && pwd)"

echo "== build: cargo build --release -p idp-server -p idp-bench ==" >&2
cargo build --release --quiet -p idp-server -p idp-bench
IDP_BENCH="$TARGET_DIR/release/idp-bench"

# The peer runs from the shared directory when its node_modules is installed there;
# otherwise from a copy under target/ (the shared directory is left as it is: it is
# read-only by mode), installed with `npm ci` from the shared package-lock.json.
if [[ -d "$PEER_DIR/node_modules/oidc-provider" ]]; then
    PEER_RUN_DIR="$PEER_DIR"
else
    PEER_RUN_DIR="$TARGET_DIR/compare-peers"
    mkdir -p "$PEER_RUN_DIR/oidc-provider"
    install -m 644 "$PEER_DIR/package.json" "$PEER_DIR/package-lock.json" "$PEER_RUN_DIR/"
    install -m 644 "$PEER_DIR/oidc-provider/server.js" "$PEER_RUN_DIR/oidc-provider/"
    if [[ ! -d "$PEER_RUN_DIR/node_modules/oidc-provider" ]] \
        || ! cmp -s "$PEER_RUN_DIR/package-lock.json" "$PEER_RUN_DIR/node_modules/.installed-lock.json"; then
        echo "== no node_modules in $PEER_DIR: npm ci in $PEER_RUN_DIR ==" >&2
        (cd "$PEER_RUN_DIR" && npm ci --no-audit --no-fund) >&2
        cp "$PEER_RUN_DIR/package-lock.json" "$PEER_RUN_DIR/node_modules/.installed-lock.json"
    fi
fi
PEER_VERSION="$(node -p 'require(process.argv[1]).version' "$PEER_RUN_DIR/node_modules/oidc-provider/package.json")"

RESULTS_DIR="$ROOT/bench/results"
mkdir -p "$RESULTS_DIR"
TMP="$(mktemp -d /tmp/idp-compare.XXXXXX)"
STAMP="$(date -u +%Y-%m-%dT%H-%M-%SZ)"
STARTED_AT="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
OUT_JSON="$RESULTS_DIR/compare-$STAMP.json"

PEER_PID=""
stop_peer() {
    if [[ -n "$PEER_PID" ]] && kill -0 "$PEER_PID" 2>/dev/null; then
        kill "$PEER_PID" 2>/dev/null || true
        wait "$PEER_PID" 2>/dev/null || true
    fi
    PEER_PID=""
}
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    stop_peer
    if [[ "$KEEP_TEMP" == 1 ]]; then echo "temporary files kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- wait until the machine is quiet (it may be shared) --------------------------------
busy_pct() { # percent of all CPUs busy over 2 s
    local a b
    read -r -a a < <(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9; exit}' /proc/stat)
    sleep 2
    read -r -a b < <(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9; exit}' /proc/stat)
    echo $(( 100 * (b[0] - a[0]) / (b[1] - a[1] + 1) ))
}
WARNINGS="$TMP/warnings.txt"
: > "$WARNINGS"
wait_quiet() { # what -> returns once 2 samples in a row were quiet, or after QUIET_WAIT s
    local what="$1" waited=0 quiet=0 pct
    while (( quiet < 2 )); do
        pct="$(busy_pct)"
        if (( pct < QUIET_PCT )); then quiet=$(( quiet + 1 )); continue; fi
        quiet=0
        if (( waited >= QUIET_WAIT )); then
            echo "WARNING: machine still ${pct}% busy after ${waited} s; measuring $what anyway" | tee -a "$WARNINGS" >&2
            return
        fi
        (( waited % 30 == 0 )) && echo "machine ${pct}% busy (another process?): waiting before $what" >&2
        sleep 3; waited=$(( waited + 5 ))
    done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- AgentIdP: idp-bench on PostgreSQL + Redis -----------------------------------------
run_agentidp() { # alg run -> its bench/results/<time>.json path appended to $TMP/idp-<alg>.paths
    local alg="$1" run="$2" rc=0 json
    local dir="$TMP/idp-$alg-run$run"
    mkdir -p "$dir"
    wait_quiet "AgentIdP $alg run $run"
    echo "== AgentIdP $alg run $run/$RUNS: idp-bench --deployment postgres --scenario token,introspect ==" >&2
    "$IDP_BENCH" --deployment postgres --scenario token,introspect --signing-alg "$alg" \
        --skip-micro --duration "$DURATION" --runs 1 --connections "$CONNS" \
        --threads "$THREADS" --results-dir "$dir" > "$dir.out" || rc=$?
    grep -E '^    (token|introspect) run' "$dir.out" >&2 || true
    json="$(find "$dir" -maxdepth 1 -name '*.json' | head -1)"
    if [[ -z "$json" ]]; then
        echo "error: idp-bench ($alg, run $run) wrote no result (exit $rc); its output:" >&2
        cat "$dir.out" >&2
        return 1
    fi
    (( rc == 0 )) || echo "WARNING: idp-bench ($alg, run $run) exited with $rc (a failed scenario: see the table)" | tee -a "$WARNINGS" >&2
    mv "$json" "$RESULTS_DIR/"
    echo "$RESULTS_DIR/$(basename "$json")" >> "$TMP/idp-$alg.paths"
}

# --- the peer: oidc-provider + load.sh -------------------------------------------------
PEER_LOAD_ENV=(INTROSPECT_TOKEN_BODY='grant_type=client_credentials&resource=urn:bench:opaque'
               CONNS="$CONNS" THREADS="$THREADS")
start_peer() { # alg -> PEER_PID, answering and warmed up
    local alg="$1" base="http://127.0.0.1:$PEER_PORT" ready=0
    if port_busy "$PEER_PORT"; then
        echo "error: port $PEER_PORT is already in use (another oidc-provider?); stop it first" >&2
        return 1
    fi
    (cd "$PEER_RUN_DIR" && exec env NODE_ENV=production JWT_ALG="$alg" PORT="$PEER_PORT" HOST=127.0.0.1 \
        node oidc-provider/server.js) > "$TMP/peer-$alg.log" 2>&1 &
    PEER_PID=$!
    for _ in $(seq 1 100); do
        if curl -fs -o /dev/null -u bench-client:bench-secret -d grant_type=client_credentials "$base/token"; then
            ready=1; break
        fi
        kill -0 "$PEER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if (( ready == 0 )); then
        echo "error: oidc-provider ($alg) did not answer on $base; its log:" >&2
        tail -20 "$TMP/peer-$alg.log" >&2
        stop_peer
        return 1
    fi
    echo "== oidc-provider $PEER_VERSION $alg (pid $PEER_PID) on $base: warm-up ==" >&2
    if (( WARMUP > 0 )); then
        env "${PEER_LOAD_ENV[@]}" DURATION="$WARMUP" LABEL=warmup \
            "$PEER_DIR/load.sh" "$base" /token bench-client bench-secret /token/introspection >/dev/null 2>&1
    fi
    : > "$TMP/peer-$alg.txt"
}

run_peer() { # alg run -> its RESULT lines appended to $TMP/peer-<alg>.txt
    local alg="$1" run="$2" base="http://127.0.0.1:$PEER_PORT"
    wait_quiet "oidc-provider $alg run $run"
    echo "== oidc-provider $PEER_VERSION $alg run $run/$RUNS: load.sh ==" >&2
    env "${PEER_LOAD_ENV[@]}" DURATION="$DURATION" LABEL="oidc-provider-$alg#run$run" \
        SERVER_PIDS="$PEER_PID" RESULTS="$TMP/peer-$alg.txt" \
        "$PEER_DIR/load.sh" "$base" /token bench-client bench-secret /token/introspection \
        > "$TMP/peer-$alg-run$run.out" 2> "$TMP/peer-$alg-run$run.err" || {
            echo "error: load.sh against oidc-provider ($alg) failed:" >&2
            cat "$TMP/peer-$alg-run$run.err" >&2
            return 1
        }
    grep -h '^RESULT' "$TMP/peer-$alg-run$run.out" | awk '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        printf "    %s: %.0f req/s, p50 %s ms, p99 %s ms, non-2xx %s, server CPU %s s, other %s s\n",
            f["label"], f["rps"], f["p50_ms"], f["p99_ms"], f["non2xx"], f["server_cpu_s"], f["other_cpu_s"] }' >&2
}

finish_peer() { # alg -> VmHWM in $TMP/peer-<alg>.hwm, the peer stopped
    awk '/^VmHWM/{print $2}' "/proc/$PEER_PID/status" > "$TMP/peer-$1.hwm" 2>/dev/null || true
    stop_peer
}

FAILED=0
for alg in "${ALG_LIST[@]}"; do
    if ! start_peer "$alg"; then
        FAILED=1
        continue
    fi
    for run in $(seq 1 "$RUNS"); do
        run_agentidp "$alg" "$run" || FAILED=1
        run_peer "$alg" "$run" || FAILED=1
    done
    finish_peer "$alg"
done

# --- the table and the JSON ------------------------------------------------------------
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then COMMIT="$COMMIT-dirty"; fi
CMP_ALGS="${ALG_LIST[*]}" CMP_DURATION="$DURATION" CMP_RUNS="$RUNS" CMP_CONNS="$CONNS" \
CMP_THREADS="$THREADS" CMP_WARMUP="$WARMUP" CMP_PEER_VERSION="$PEER_VERSION" \
CMP_STARTED_AT="$STARTED_AT" CMP_COMMIT="$COMMIT" CMP_COMMAND="bench/compare.sh $ORIG_ARGS" \
python3 - "$TMP" "$OUT_JSON" <<'EOF' || FAILED=1
import datetime, json, os, statistics, subprocess, sys
tmp, out = sys.argv[1], sys.argv[2]
env = os.environ
algs = env["CMP_ALGS"].split()
duration, runs, conns, threads, warmup = (int(env[k]) for k in ("CMP_DURATION", "CMP_RUNS", "CMP_CONNS", "CMP_THREADS", "CMP_WARMUP"))
peer_version = env["CMP_PEER_VERSION"]
node_version = subprocess.run(["node", "-v"], capture_output=True, text=True).stdout.strip()
cpus = os.cpu_count() or 1
RSS_TARGET_MIB = 64
# scenario -> (ratio target, p99 target for AgentIdP in ms or None), per the issue (14)
TARGETS = {("token", "RS256"): (1.3, 25.0), ("token", "ES256"): (2.0, None),
           ("introspect", "RS256"): (2.0, None), ("introspect", "ES256"): (2.0, None)}

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None

def peer_side(alg):
    text = read(os.path.join(tmp, f"peer-{alg}.txt")) or ""
    by = {}
    for line in text.splitlines():
        if not line.startswith("RESULT"):
            continue
        kv = dict(p.split("=", 1) for p in line.split()[1:])
        scen = kv["label"].rsplit("/", 1)[-1]
        by.setdefault(scen, []).append(kv)
    hwm = read(os.path.join(tmp, f"peer-{alg}.hwm"))
    res = {}
    for scen, rows in by.items():
        f = lambda k: [float(r[k]) for r in rows if k in r and r[k] not in ("", "n/a")]
        errors = sum(int(r.get("non2xx", 0)) + sum(int(r.get(k, 0)) for k in ("connect_err", "read_err", "write_err", "timeout_err")) for r in rows)
        res[scen] = {
            "requests_per_s": med(f("rps")), "p50_ms": med(f("p50_ms")), "p99_ms": med(f("p99_ms")),
            "errors": errors,
            "server_cpu_percent": med([100 * c / float(r["duration_s"]) for c, r in zip(f("server_cpu_s"), rows)]),
            "other_cpu_s_max": max(f("other_cpu_s"), default=None),
            "hwm_kib": int(hwm) if hwm and hwm.isdigit() else None,
            "runs": rows,
        }
    return res

def idp_side(alg):
    """AgentIdP's scenarios over its runs (one idp-bench result per run), summed up
    as idp-bench sums up its own runs (ScenarioReport::from_runs); a scenario that
    failed in any run is a failure."""
    paths = (read(os.path.join(tmp, f"idp-{alg}.paths")) or "").split()
    runs, failures, hwm, notes = {}, {}, {}, []
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        for dep in report.get("deployments", []):
            if dep.get("note") and not dep.get("scenarios"):
                notes.append(dep["note"])
            for s in dep.get("scenarios", []):
                scen = s["scenario"]
                runs.setdefault(scen, []).extend(s.get("runs", []))
                if s.get("failure"):
                    failures.setdefault(scen, s["failure"])
                if s.get("hwm_kib"):
                    hwm[scen] = max(hwm.get(scen, 0), s["hwm_kib"])
    res = {"_note": "; ".join(notes)} if notes else {}
    for scen, rs in runs.items():
        if scen in failures or not rs:
            res[scen] = {"failure": failures.get(scen, "no runs")}
            continue
        res[scen] = {
            "scenario": scen,
            "requests_per_s": med([r.get("requests_per_s") for r in rs]),
            "p50_ms": med([r.get("p50_ms") for r in rs]),
            "p99_ms": med([r.get("p99_ms") for r in rs]),
            "errors": sum(r.get("bad_responses", 0) + r.get("socket_errors", 0) for r in rs),
            "rss_peak_kib": max((r.get("rss_peak_kib") or 0 for r in rs), default=None) or None,
            "server_cpu_percent": med([r.get("server_cpu_percent") for r in rs]),
            "hwm_kib": hwm.get(scen),
            "other_cpu_percent_max": max((r.get("other_cpu_percent") or 0 for r in rs), default=None),
            "runs": rs,
        }
    return paths, res

rows, idp_files, rss_peaks, hwms = [], [], [], []
for scen in ("token", "introspect"):
    for alg in algs:
        paths, idp = idp_side(alg)
        idp_files.extend(p for p in paths if p not in idp_files)
        ours = idp.get(scen, {"failure": idp.get("_note", "no result from idp-bench (see its output above)" if paths else "idp-bench did not run")})
        theirs = peer_side(alg).get(scen)
        ratio = None
        if ours.get("requests_per_s") and theirs and theirs.get("requests_per_s"):
            ratio = ours["requests_per_s"] / theirs["requests_per_s"]
        want_ratio, want_p99 = TARGETS[(scen, alg)]
        met = None
        if ratio is not None:
            met = ratio >= want_ratio and (want_p99 is None or (ours.get("p99_ms") or 1e9) <= want_p99)
        if ours.get("rss_peak_kib"):
            rss_peaks.append(ours["rss_peak_kib"])
        if ours.get("hwm_kib"):
            hwms.append(ours["hwm_kib"])
        rows.append({"scenario": f"{scen} {alg}", "kind": scen, "signing_alg": alg,
                     "agentidp": ours, "peer": theirs, "ratio": ratio,
                     "target": {"ratio_at_least": want_ratio, "agentidp_p99_ms_at_most": want_p99},
                     "met": met})

def n(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)

def ms(v):
    if v is None:
        return "-"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"

def mib(k):
    return "-" if k is None else f"{k / 1024:.1f}"

header = ["scenario", "AgentIdP req/s", "p99 ms", "RSS MiB", "CPU", f"oidc-provider req/s", "p99 ms", "CPU", "ratio", "target", "met"]
table = []
for r in rows:
    o, t = r["agentidp"], r["peer"] or {}
    tgt = f'>= {r["target"]["ratio_at_least"]:g}x' + (f', p99 <= {r["target"]["agentidp_p99_ms_at_most"]:g} ms' if r["target"]["agentidp_p99_ms_at_most"] else "")
    label = r["scenario"]
    ours_rps = n(o.get("requests_per_s")) if not o.get("failure") else "failed"
    theirs_rps = n(t.get("requests_per_s")) if r["peer"] else "failed"
    table.append([label, ours_rps, ms(o.get("p99_ms")), mib(o.get("rss_peak_kib")),
                  n(o.get("server_cpu_percent"), "{:.0f}%"), theirs_rps, ms(t.get("p99_ms")),
                  n(t.get("server_cpu_percent"), "{:.0f}%"), n(r["ratio"], "{:.2f}"), tgt,
                  "-" if r["met"] is None else ("yes" if r["met"] else "NO")])
widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
left = {0, 9}
def line(cells):
    return "| " + " | ".join(c.ljust(widths[i]) if i in left else c.rjust(widths[i]) for i, c in enumerate(cells)) + " |"
print()
print(f"AgentIdP (PostgreSQL + Redis, release, limits raised) vs oidc-provider {peer_version} (Node {node_version}, in-memory):")
print(f"wrk {conns} connections, {threads} thread(s), {duration} s x {runs} runs per scenario (median), {cpus} CPUs; "
      "token: client_credentials, client_secret_basic; introspection: AgentIdP of its JWTs (Bearer admin), oidc-provider of an opaque token")
print()
print(line(header))
print("|" + "|".join(("-" * (w + 1) + ":") if i not in left else (":" + "-" * (w + 1)) for i, w in enumerate(widths)) + "|")
for row in table:
    print(line(row))
print()
print("CPU: the server's CPU time over the run's wall time, in % of one core (median of the runs; "
      f"{cpus * 100}% = every core). ratio = AgentIdP req/s / oidc-provider req/s; p99 target on AgentIdP's p99.")
sampled = max(rss_peaks) if rss_peaks else None
hwm = max(hwms) if hwms else None
peak = max(rss_peaks + hwms) if rss_peaks + hwms else None
rss_met = None if peak is None else peak / 1024 <= RSS_TARGET_MIB
print(f"AgentIdP server RSS: highest sample under load {mib(sampled)} MiB, VmHWM (peak since start, seeding included) "
      f"{mib(hwm)} MiB; target <= {RSS_TARGET_MIB} MiB: " + ("-" if rss_met is None else ("met" if rss_met else "NOT met")))
peer_hwm = [r["peer"]["hwm_kib"] for r in rows if r["peer"] and r["peer"].get("hwm_kib")]
if peer_hwm:
    print(f"oidc-provider VmHWM: {mib(max(peer_hwm))} MiB")
for r in rows:
    o, t = r["agentidp"], r["peer"]
    if o.get("failure"):
        print(f'AgentIdP {r["scenario"]} failed: {o["failure"]}')
    if o.get("errors"):
        print(f'AgentIdP {r["scenario"]}: {o["errors"]} errors')
    if t and t.get("errors"):
        print(f'oidc-provider {r["scenario"]}: {t["errors"]} non-2xx or socket errors')
others = [r["agentidp"].get("other_cpu_percent_max") for r in rows]
others = [v for v in others if v is not None]
peer_others = [r["peer"]["other_cpu_s_max"] for r in rows if r["peer"] and r["peer"].get("other_cpu_s_max") is not None]
if others or peer_others:
    print("CPU of other processes during the runs (max): AgentIdP side "
          + (f"{max(others):.0f}% of one core" if others else "-") + ", oidc-provider side "
          + (f"{max(peer_others):.2f} s per run" if peer_others else "-")
          + " (AgentIdP's includes PostgreSQL and Redis)")
warnings = (read(os.path.join(tmp, "warnings.txt")) or "").splitlines()
for w in warnings:
    print(w)
doc = {
    "started_at": env["CMP_STARTED_AT"],
    "finished_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "command": env["CMP_COMMAND"].strip(),
    "git_commit": env["CMP_COMMIT"],
    "cpus": cpus,
    "settings": {"duration_s": duration, "runs": runs, "connections": conns, "wrk_threads": threads,
                 "peer_warmup_s": warmup, "signing_algs": algs, "agentidp_deployment": "postgres+redis"},
    "peer": {"name": "oidc-provider", "version": peer_version, "node": node_version,
             "introspected_token": "opaque (resource urn:bench:opaque)"},
    "rows": rows,
    "agentidp_rss_peak_kib": sampled,
    "agentidp_hwm_kib": hwm,
    "rss_target_mib": RSS_TARGET_MIB,
    "rss_met": rss_met,
    "agentidp_results": idp_files,
    "warnings": warnings,
}
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
print()
print(f"results: {out}")
for p in idp_files:
    print(f"         {p} (idp-bench)")
EOF

exit "$FAILED"
