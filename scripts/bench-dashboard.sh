#!/usr/bin/env bash
# Measures the experiment list of the HTTP API with many experiments in the
# event log: time to replay the log at start, time of the dashboard's first
# page and of other pages, and the memory (RSS) of studiod.
# Usage: scripts/bench-dashboard.sh [COUNT]   (default 100000)
# Uses a release build; the figures go into docs/benchmarks-dashboard.md.
set -euo pipefail
cd "$(dirname "$0")/.."

count="${1:-100000}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet -p studiod --bin studiod --example generate_experiments

home="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$home"
}
trap cleanup EXIT

"$target/release/examples/generate_experiments" "$home/studio" "$count"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
start_ns="$(date +%s%N)"
STUDIOML_HOME="$home/studio" "$target/release/studiod" --http "127.0.0.1:$port" >"$home/studiod.out" 2>&1 &
pid=$!
until curl -sf -o /dev/null "http://127.0.0.1:$port/api/v1/daemon"; do
    kill -0 "$pid" 2>/dev/null || { cat "$home/studiod.out"; exit 1; }
    sleep 0.05
done
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
rss_idle="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"

# Median of 21 requests, in milliseconds.
median_ms() {
    local url="$1"
    for _ in $(seq 21); do
        curl -s -o /dev/null -w '%{time_total}\n' "$url"
    done | sort -n | awk '{ times[NR] = $1 } END { printf "%.1f", times[11] * 1000 }'
}

base="http://127.0.0.1:$port/api/v1/experiments"
fields="key,script,time_added,metric,metric_value,project,owner,status"
baseline="$(median_ms "http://127.0.0.1:$port/api/v1/daemon")"
first_page="$(median_ms "$base?limit=50&fields=$fields")"
first_full="$(median_ms "$base?limit=50")"
cursor="$(curl -s "$base?limit=50&fields=key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_cursor"])')"
second_page="$(median_ms "$base?limit=50&fields=$fields&cursor=$cursor")"
oldest_page="$(median_ms "$base?limit=50&fields=$fields&sort=-time")"
project_page="$(median_ms "$base?limit=50&fields=$fields&project=project-3")"
metric_page="$(median_ms "$base?limit=50&fields=$fields&sort=metric")"
text_page="$(median_ms "$base?limit=50&fields=$fields&q=bench_00999")"
projects="$(median_ms "http://127.0.0.1:$port/api/v1/projects")"
rss_after="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
total="$(curl -s "$base?limit=1&fields=key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')"

cat <<REPORT
experiments in the log:            $total
studiod start to first answer:     $ready_ms ms (replays the whole log)
/api/v1/daemon (HTTP round trip):  $baseline ms
first page, 50 rows, dashboard fields: $first_page ms
first page, 50 rows, all fields:   $first_full ms
second page (cursor):              $second_page ms
oldest first (sort=-time):         $oldest_page ms
one project (1 in 20):             $project_page ms
sorted by metric:                  $metric_page ms
text search (q=):                  $text_page ms
/api/v1/projects:                  $projects ms
RSS after start:                   $((rss_idle / 1024)) MiB
RSS after the requests:            $((rss_after / 1024)) MiB
REPORT
