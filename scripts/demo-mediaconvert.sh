#!/usr/bin/env bash
# The MediaConvert path end to end, on this machine only: testdata/media
# encrypted with KMS and SSE-KMS to a local S3 (moto), the jobs file, one
# request validated by botocore's model, a submit to the local MediaConvert
# endpoint (cli/tests/common/mediaconvert_mock.py) killed between a job and
# its record and resumed with no duplicate job, the printed policies, and
# the HeadObject of an uploaded object.
# Usage: scripts/demo-mediaconvert.sh [SEALPIPE_BINARY]   (default: cargo's debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-}"
if [ -z "$bin" ]; then cargo build -q -p sealpipe-cli; bin=target/debug/sealpipe; fi
work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port="$(free_port)"
python3 -m moto.server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 & pids+=($!)
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null; do sleep 0.1; done
arn="$(python3 - <<'PY'
import boto3, os
kms = boto3.client('kms'); s3 = boto3.client('s3')
k = kms.create_key(Description='sealpipe demo')['KeyMetadata']
kms.create_alias(AliasName='alias/media', TargetKeyId=k['KeyId'])
s3.create_bucket(Bucket='media-in')
print(k['Arn'])
PY
)"

echo "== encrypt testdata/media to s3://media-in/archive/ (KMS data keys, SSE-KMS, s3:// manifest)"
"$bin" encrypt testdata/media --to s3://media-in/archive/ --manifest s3://media-in/runs/demo.jsonl \
  --kms-key alias/media --target mediaconvert --sse aws:kms --sse-kms-key-id "$arn" --bucket-key-enabled --force-path-style

echo; echo "== HeadObject of one uploaded object"
python3 -c "import boto3, json; h = boto3.client('s3').head_object(Bucket='media-in', Key='archive/clip.mp4'); print(json.dumps({k: h.get(k) for k in ('ContentLength', 'ServerSideEncryption', 'SSEKMSKeyId', 'BucketKeyEnabled')}, indent=1))"

cat > "$work/template.json" <<'JSON'
{"Role": "arn:aws:iam::123456789012:role/MediaConvertRole",
 "Settings": {"Inputs": [{"AudioSelectors": {"Audio Selector 1": {"DefaultSelection": "DEFAULT"}}, "TimecodeSource": "ZEROBASED"}],
              "OutputGroups": []}}
JSON
echo; echo "== sealpipe jobs (JSON Lines; one request shown whole)"
"$bin" jobs --manifest s3://media-in/runs/demo.jsonl --template "$work/template.json" --region eu-west-1 --force-path-style > "$work/jobs.jsonl"
wc -l < "$work/jobs.jsonl" | sed 's/$/ requests (the jobs file):/'
cat "$work/jobs.jsonl"
echo "-- the first, whole:"
head -1 "$work/jobs.jsonl" | python3 -m json.tool
head -1 "$work/jobs.jsonl" > "$work/one.json"
echo "== botocore's MediaConvert model on that request"
python3 scripts/mediaconvert_model.py "$work/one.json" && echo "valid"

echo; echo "== submit, killed between the 2nd job and its record, then resumed"
python3 -c "import boto3; boto3.client('s3').download_file('media-in', 'runs/demo.jsonl', '$work/demo.jsonl')"
mock_out="$work/mock.out"
python3 cli/tests/common/mediaconvert_mock.py --hold-at 2 --throttle-at 4 --token-window 0 --log "$work/mock.log" > "$mock_out" & pids+=($!)
until grep -q listening "$mock_out" 2>/dev/null; do sleep 0.1; done
mc="$(sed -n 's/^listening on //p' "$mock_out")"
"$bin" jobs --manifest "$work/demo.jsonl" --template "$work/template.json" --region us-east-1 --submit --max-rps 1 \
  --endpoint-url "$mc" --json > "$work/first.jsonl" 2>/dev/null & run=$!
until grep -q '"held": true' "$work/mock.log" 2>/dev/null; do sleep 0.1; done
kill -9 "$run"; wait "$run" 2>/dev/null || true
echo "ledger after the kill:"; cat "$work/demo.jsonl.jobs.jsonl"
"$bin" jobs --manifest "$work/demo.jsonl" --template "$work/template.json" --region us-east-1 --submit --max-rps 20 \
  --endpoint-url "$mc" --json | tail -1
python3 - "$work/mock.log" <<'PY'
import json, sys
log = [json.loads(l) for l in open(sys.argv[1])]
made = [e for e in log if e.get("new")]
print(f"endpoint: {len(made)} jobs made for {len({e['token'] for e in made})} tokens; "
      f"{sum(e.get('status') == 429 for e in log)} throttled; {sum('listed' in e for e in log)} ListJobs")
PY

echo; echo "== sealpipe policy"
"$bin" policy --manifest "$work/demo.jsonl" --to s3://media-in/archive/
