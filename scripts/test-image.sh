#!/usr/bin/env bash
# The container image, tested end to end on this machine (issue 22):
# builds it (scripts/build-image.sh), starts moto on loopback, runs
# `sealpipe encrypt` inside the container (--network=host) reading a mounted
# folder and writing both a mounted folder (with its manifest) and S3 on moto
# (with an s3:// manifest), then `sealpipe verify` outside the container on
# both manifests. Fails loudly, never skips: without podman it says so and
# exits 1. Not part of scripts/test.sh (see README: podman on a fresh CI
# machine needs root, an apt install and this host's cgroup workarounds).
#
#   scripts/test-image.sh            (builds the release binary first)
#   SEALPIPE_IMAGE_BIN=target/debug/sealpipe scripts/test-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v podman >/dev/null || { echo "test-image.sh: FAIL: podman is not installed (apt-get install -y podman runc)" >&2; exit 1; }
command -v runc >/dev/null || { echo "test-image.sh: FAIL: runc is not installed (apt-get install -y runc)" >&2; exit 1; }
export CONTAINERS_CONF="$PWD/scripts/podman/containers.conf"
export AWS_EC2_METADATA_DISABLED=true
tag="localhost/sealpipe:test-$$"
bin="${SEALPIPE_IMAGE_BIN:-target/release/sealpipe}"
podman=(podman --runtime runc --cgroup-manager=cgroupfs)

work="$(mktemp -d)"
moto_pid=""
cleanup() {
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
  "${podman[@]}" rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

SEALPIPE_IMAGE_BIN="${SEALPIPE_IMAGE_BIN:-}" scripts/build-image.sh "$tag"
[ -x "$bin" ] || { echo "test-image.sh: FAIL: no binary at $bin" >&2; exit 1; }
echo "test-image.sh: image: $("${podman[@]}" image inspect --format 'user {{.Config.User}}, entrypoint {{.Config.Entrypoint}}, {{.Size}} bytes' "$tag")"
echo "test-image.sh: in the container: $("${podman[@]}" run --rm "$tag" --version)"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
python3 -m moto.server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
for _ in $(seq 1 300); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break; sleep 0.1; done
python3 - <<'PY'
import boto3, os
kms = boto3.client("kms"); s3 = boto3.client("s3")
key = kms.create_key(Description="sealpipe image test")["KeyMetadata"]["KeyId"]
kms.create_alias(AliasName="alias/image", TargetKeyId=key)
s3.create_bucket(Bucket="image")
PY

# The mounted folder: sources in, outputs out; the container's user (10001) writes it.
mkdir -p "$work/data/media/sub" "$work/data/out"
python3 - "$work/data/media" <<'PY'
import os, sys
d = sys.argv[1]
open(os.path.join(d, "big.ts"), "wb").write(os.urandom((5 << 20) + 4321))
for i in range(5):
    open(os.path.join(d, "sub", f"seg{i}.ts"), "wb").write(os.urandom(1000 + 977 * i))
PY
chmod -R a+rwX "$work/data"

run_in_container() {
  "${podman[@]}" run --rm --network=host -v "$work/data:/data" \
    -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION -e AWS_DEFAULT_REGION -e AWS_ENDPOINT_URL \
    -e AWS_EC2_METADATA_DISABLED=true "$tag" "$@"
}
echo "test-image.sh: encrypt in the container, mounted folder to mounted folder"
run_in_container encrypt /data/media --out /data/out --kms-key alias/image --manifest /data/out/manifest.jsonl
echo "test-image.sh: encrypt in the container, mounted folder to S3 with an s3:// manifest"
run_in_container encrypt /data/media --to s3://image/enc/ --kms-key alias/image --manifest s3://image/runs/m.jsonl --part-size 5M --force-path-style

owners="$(stat -c '%u' "$work"/data/out/big.ts "$work"/data/out/sub/*.ts | sort -u)"
[ "$owners" = "10001" ] || { echo "test-image.sh: FAIL: outputs owned by '$owners', not the image's user 10001" >&2; exit 1; }
records="$(wc -l < "$work/data/out/manifest.jsonl")"
[ "$records" = 6 ] || { echo "test-image.sh: FAIL: $records records in the local manifest, expected 6" >&2; exit 1; }

echo "test-image.sh: verify outside the container ($bin)"
"$bin" verify --manifest "$work/data/out/manifest.jsonl"
"$bin" verify --manifest s3://image/runs/m.jsonl --force-path-style
open="$(python3 -c "import boto3; print(len(boto3.client('s3').list_multipart_uploads(Bucket='image').get('Uploads', [])))")"
[ "$open" = 0 ] || { echo "test-image.sh: FAIL: $open multipart upload(s) left open" >&2; exit 1; }
echo "test-image.sh: PASS: the image ran encrypt (folder -> folder, folder -> S3) as user 10001; verify passed outside on both manifests; no upload open"
