#!/usr/bin/env bash
# Measures artifact capture against `tar czf` on the same 1 GiB directory of
# mixed files, and the re-capture of that directory unchanged.
# Usage: scripts/bench-artifacts.sh [SIZE_MIB]   (default 1024)
# Needs: a release build (`cargo build --release`), python3, GNU tar, gzip.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=${1:-1024}
target_dir=${CARGO_TARGET_DIR:-target}
studio="$target_dir/release/studio"
if [ ! -x "$studio" ]; then
    echo "missing $studio: run cargo build --release first" >&2
    exit 1
fi

work=$(mktemp -d /tmp/studio-bench-XXXXXX)
cleanup() {
    HOME="$work/home" "$studio" daemon stop >/dev/null 2>&1 || true
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/home" "$work/run"
data="$work/data"

echo "== generating $size_mib MiB of mixed files in $data"
python3 - "$data" "$size_mib" <<'PY'
import os, random, sys
root, size_mib = sys.argv[1], int(sys.argv[2])
random.seed(42)
total = size_mib << 20
# 40 % incompressible binary in 16 MiB files, 40 % CSV text in 8 MiB files,
# 20 % small files of 4 to 64 KiB in nested directories.
def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
binary = total * 4 // 10
for i in range(binary // (16 << 20)):
    write(os.path.join(root, "weights", f"shard-{i:03d}.bin"), random.randbytes(16 << 20))
text = total * 4 // 10
for i in range(text // (8 << 20)):
    rows = []
    length = 0
    while length < (8 << 20):
        row = ",".join(f"{random.random():.6f}" for _ in range(8)) + "\n"
        rows.append(row)
        length += len(row)
    write(os.path.join(root, "csv", f"part-{i:03d}.csv"), "".join(rows).encode())
small = total - binary - text
written = 0
i = 0
while written < small:
    n = random.randint(4, 64) << 10
    content = (random.randbytes(n // 2) + b"x" * (n - n // 2))
    write(os.path.join(root, "small", f"d{i % 50:02d}", f"f{i:05d}.dat"), content)
    written += n
    i += 1
PY
du -sh "$data"
sync

echo "== tar czf (GNU tar + gzip -6)"
start=$(date +%s.%N)
tar czf "$work/ref.tar.gz" -C "$data" .
end=$(date +%s.%N)
tar_seconds=$(echo "$end - $start" | bc)
tar_size=$(stat -c %s "$work/ref.tar.gz")
rm -f "$work/ref.tar.gz"
echo "tar czf: ${tar_seconds}s, $tar_size bytes"

echo "== tar cf - | gzip -1 (same level as Studio)"
start=$(date +%s.%N)
tar cf - -C "$data" . | gzip -1 > "$work/ref1.tar.gz"
end=$(date +%s.%N)
fast_seconds=$(echo "$end - $start" | bc)
fast_size=$(stat -c %s "$work/ref1.tar.gz")
rm -f "$work/ref1.tar.gz"
echo "tar | gzip -1: ${fast_seconds}s, $fast_size bytes"

printf 'print("done")\n' > "$work/run/noop.py"
run_capture() {
    local key=$1
    local start end
    start=$(date +%s.%N)
    (cd "$work/run" && HOME="$work/home" STUDIOML_HTTP=off "$studio" run -e "$key" \
        --capture-once="$data:data" --capture-once=null:workspace noop.py >/dev/null 2>&1)
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}
artifact_field() {
    HOME="$work/home" "$studio" artifacts list "$1" --json |
        python3 -c "import json,sys; print([a for a in json.load(sys.stdin) if a['tag']=='data'][0]['$2'])"
}

echo "== studio run --capture-once (first capture: packs and stores)"
HOME="$work/home" STUDIOML_HTTP=off "$studio" daemon start >/dev/null
first=$(run_capture first)
studio_size=$(artifact_field first size)
echo "studio capture: ${first}s, $studio_size bytes"

echo "== studio run --capture-once, unchanged (fingerprint cache)"
second=$(run_capture second)
echo "studio re-capture: ${second}s"

echo "== studio run --capture-once, unchanged, fingerprint cache cleared (packs again, blob exists)"
rm -rf "$work/home/.studioml/artifacts/fingerprints/"*
third=$(run_capture third)
echo "studio re-pack: ${third}s"
[ "$(artifact_field first digest)" = "$(artifact_field third digest)" ] && echo "same digest: yes"

echo "== studio run without artifacts (overhead of a run)"
overhead_start=$(date +%s.%N)
(cd "$work/run" && HOME="$work/home" STUDIOML_HTTP=off "$studio" run -e empty --capture-once=null:workspace noop.py >/dev/null 2>&1)
overhead=$(echo "$(date +%s.%N) - $overhead_start" | bc)
echo "studio run overhead: ${overhead}s"

echo
echo "| measure | seconds | bytes |"
echo "|---|---|---|"
echo "| tar czf (gzip -6) | $tar_seconds | $tar_size |"
echo "| tar cf - \| gzip -1 | $fast_seconds | $fast_size |"
echo "| studio first capture (studio run, whole command) | $first | $studio_size |"
echo "| studio re-capture, unchanged | $second | (no new blob) |"
echo "| studio re-pack, unchanged, no fingerprint cache | $third | (no new blob) |"
echo "| studio run with no artifacts | $overhead | |"
echo "ratio first capture / tar czf: $(echo "scale=2; $first / $tar_seconds" | bc)"
