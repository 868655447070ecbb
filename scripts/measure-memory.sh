#!/usr/bin/env bash
# Peak resident memory of sealpipe runs against the --memory budget they
# were given (GNU time's "Maximum resident set size"): one 4 GiB file, CTR,
# file → file; and a 1,000-file batch (1 MiB each). The RSS includes the
# program itself and the pages of the memory-mapped input window.
# Usage: scripts/measure-memory.sh [SEALPIPE_BINARY] [FILE_GIB]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/sealpipe}"
gib="${2:-4}"
[ -x "$bin" ] || { echo "build it first: cargo build --release -p sealpipe-cli" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time; Debian package 'time')" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/sealpipe-mem.XXXXXX")
trap 'rm -rf "$work"' EXIT
export SEALPIPE_KEYRING="$work/keyring.json"
head -c $((gib << 30)) /dev/zero > "$work/big.bin"
mkdir -p "$work/many"
for i in $(seq 1 1000); do head -c 1048576 /dev/urandom > "$work/many/f$i.bin"; done
peak() { # budget label args...
  local budget=$1 label=$2; shift 2
  rm -rf "$work/out"
  /usr/bin/time -v "$bin" --memory "$budget" "$@" --out "$work/out" 2> "$work/time.txt" >/dev/null
  local kib; kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$work/time.txt")
  printf '%-28s --memory %-7s peak RSS %6d MiB\n' "$label" "$budget" $((kib / 1024))
}
for budget in 64MiB 256MiB 1GiB; do
  peak "$budget" "${gib} GiB CTR file -> file" encrypt "$work/big.bin"
  peak "$budget" "1000 x 1 MiB, CTR" encrypt "$work/many"
  peak "$budget" "1000 x 1 MiB, CBC --reuse-key" encrypt "$work/many" --mode cbc --reuse-key
done
