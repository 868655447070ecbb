#!/usr/bin/env bash
# Many small local files: `sealpipe encrypt` (local keyring, local output)
# beside `cp -r` of the same files, in interleaved rounds, and beside an
# older sealpipe binary when BASE= names one (an A/B of a change).
#
#   scripts/bench-small-files.sh                      # 20,000 files of 4 KiB, 3 rounds
#   FILES=5000 SIZE=65536 ROUNDS=5 scripts/bench-small-files.sh
#   BASE=/path/to/old/sealpipe scripts/bench-small-files.sh
#
# Outputs go to OUT (default: a fresh folder under the temporary folder) and
# are never deleted between runs: ext4 allocates inodes slowly for a while
# after thousands were deleted ("recently deleted" inodes are skipped),
# which would bill one run for the one before it. Give OUT on a fresh
# filesystem for the steadiest figures. Prints wall and CPU seconds per run,
# then medians and ratios (sealpipe / cp, sealpipe / BASE).
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${FILES:-20000}
SIZE=${SIZE:-4096}
ROUNDS=${ROUNDS:-3}
SP=${SP:-target/release/sealpipe}
BASE=${BASE:-}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sealpipe-small-XXXXXX")
OUT=${OUT:-$WORK/out}
trap 'rm -rf "$WORK"' EXIT
[ -x "$SP" ] || cargo build --release -q -p sealpipe-cli
export AWS_EC2_METADATA_DISABLED=true

python3 - "$WORK/in" "$FILES" "$SIZE" <<'PY'
import os, sys
root, files, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(files):
    d = os.path.join(root, f"d{i // 500:04d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"seg{i:06d}.ts"), "wb") as f:
        f.write(os.urandom(size))
PY

n=0
# run LABEL: one timed run of LABEL (cp, sealpipe, base) into a folder of its own.
run() {
  n=$((n + 1)); local o="$OUT/$n"; mkdir -p "$o"; sync
  case $1 in
    cp) set -- cp cp -r "$WORK/in" "$o/" ;;
    sealpipe) set -- sealpipe "$SP" encrypt "$WORK/in" --out "$o/out" --manifest "$o/m.jsonl" --keyring "$o/k.json" --create-keyring --mode ctr -q ;;
    base) set -- base "$BASE" encrypt "$WORK/in" --out "$o/out" --manifest "$o/m.jsonl" --keyring "$o/k.json" --create-keyring --mode ctr -q ;;
  esac
  local label=$1; shift
  /usr/bin/time -f "%e %U %S" -o "$WORK/t" "$@" >/dev/null
  read -r e u s < "$WORK/t"
  echo "$label wall=$e cpu=$(python3 -c "print(round($u + $s, 2))")" | tee -a "$WORK/results"
}

echo "files: $FILES of $SIZE bytes; rounds: $ROUNDS; outputs under $OUT"
for r in $(seq "$ROUNDS"); do
  # The order turns each round, so neither side always runs on a warmer machine.
  if [ $((r % 2)) = 1 ]; then
    run cp; run sealpipe; [ -z "$BASE" ] || run base
  else
    [ -z "$BASE" ] || run base; run sealpipe; run cp
  fi
done
python3 - "$WORK/results" "$FILES" <<'PY'
import re, statistics, sys
rows, files = {}, int(sys.argv[2])
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) wall=([\d.]+) cpu=([\d.]+)", line)
    rows.setdefault(m[1], []).append((float(m[2]), float(m[3])))
med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in rows.items()}
for k, (w, c) in med.items():
    print(f"{k:9} median wall {w:6.2f} s  cpu {c:6.2f} s  {files / w:8.0f} files/s")
for peer in ("cp", "base"):
    if peer in med:
        print(f"sealpipe / {peer}: wall {med['sealpipe'][0] / med[peer][0]:.2f}x, cpu {med['sealpipe'][1] / med[peer][1]:.2f}x")
PY
