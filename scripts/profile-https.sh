#!/usr/bin/env bash
# Where the CPU of an encrypt-and-upload over HTTPS goes (issue 21's
# profile): one MIB MiB file to moto over TLS (a local CA), recorded with
# `perf record -g`, then the top symbols by self time.
#
#   scripts/profile-https.sh                      # 512 MiB, --digest crc64nvme
#   MIB=256 DIGEST=sha256 SP=target/release/sealpipe scripts/profile-https.sh
set -euo pipefail
export AWS_EC2_METADATA_DISABLED=true
cd "$(dirname "$0")/.."
MIB=${MIB:-512}
DIGEST=${DIGEST:-crc64nvme}
SP=${SP:-}
TOP=${TOP:-25}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/sealpipe-profile.XXXXXX")}
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
command -v perf >/dev/null || { echo "profile-https.sh: perf is not installed (apt-get install -y linux-perf)" >&2; exit 1; }
if [ -z "$SP" ]; then cargo build --release --locked -q -p sealpipe-cli; SP=$PWD/target/release/sealpipe; fi
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 SEALPIPE_KEYRING="$WORK/keyring.json"
( cd "$WORK"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=sealpipe profile CA" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null )
PORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
python3 -m moto.server -H 127.0.0.1 -p "$PORT" -c "$WORK/server.pem" -k "$WORK/server.key" >/dev/null 2>&1 & PIDS+=($!)
for _ in $(seq 100); do curl -sk "https://127.0.0.1:$PORT" >/dev/null && break; sleep 0.1; done
AWS_CA_BUNDLE=$WORK/ca.pem python3 -c "import boto3; boto3.client('s3', endpoint_url='https://127.0.0.1:$PORT').create_bucket(Bucket='prof')"
head -c "$((MIB << 20))" /dev/urandom > "$WORK/in.bin"
perf record -q -g -o "$WORK/perf.data" -- "$SP" encrypt "$WORK/in.bin" --to s3://prof/p/ --endpoint-url "https://127.0.0.1:$PORT" \
  --ca-bundle "$WORK/ca.pem" --force-path-style --digest "$DIGEST" --manifest "$WORK/m.jsonl" --quiet 2>/dev/null
echo "== sealpipe encrypt ${MIB} MiB -> S3 over HTTPS, --digest ${DIGEST}: self time by symbol (top ${TOP})"
perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -n "$TOP"
