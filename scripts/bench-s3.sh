#!/usr/bin/env bash
# The S3 path beside its peers, in one run (issue 21's targets), as ratios:
#
#   scripts/bench-s3.sh                       # defaults below
#   SMALL=300 LATENCY_SMALL=300 S3_MIB=128 ROUNDS=1 scripts/bench-s3.sh   # quicker
#
# 1. Small objects S3 -> S3 on moto, directly and behind the project's
#    latency proxy (cli/tests/common/faultproxy.py with one rule: every
#    request waits LATENCY_MS, 30 ms by default, what a region adds):
#    `sealpipe encrypt s3://src/ --to s3://dst/` with default flags (a fresh
#    KMS data key per object) beside `aws s3 cp --recursive` (which copies
#    server-side: one CopyObject per object, nothing encrypted). Objects/s,
#    and the requests per object sealpipe made, from the proxy's log.
# 2. CPU seconds per GiB of one S3_MIB file encrypted and uploaded over
#    HTTPS (moto with a certificate from a local CA; rustls refuses a
#    self-signed leaf), user+sys of the client process only, median of
#    ROUNDS interleaved rounds: sealpipe with --digest sha256 (default),
#    blake3, crc64nvme, beside the AWS Common Runtime S3 client (Python
#    `awscrt`, a plain PUT with a CRC32C trailer, nothing encrypted) and `aws s3 cp`.
# 3. Peak RSS of a run with QUEUED small files (a local folder) against its --memory.
#
# Needs: python3 with moto[server], boto3, awscli and awscrt (installed with
# pip if missing), openssl. Everything stays on 127.0.0.1.
set -euo pipefail
export AWS_EC2_METADATA_DISABLED=true
cd "$(dirname "$0")/.."

SMALL=${SMALL:-3000}
LATENCY_SMALL=${LATENCY_SMALL:-3000}
LATENCY_MS=${LATENCY_MS:-30}
S3_MIB=${S3_MIB:-512}
SP=${SP:-}                 # a sealpipe binary to measure (default: this checkout's release build)
SP_FLAGS=${SP_FLAGS:-}     # extra flags for the small-object runs, e.g. --reuse-key
ROUNDS=${ROUNDS:-3}
QUEUED=${QUEUED:-100000}
QUEUED_MEMORY=${QUEUED_MEMORY:-256MiB}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/sealpipe-s3.XXXXXX")}
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

need_py() { python3 -c "import $1" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check "$2"; }
need_py moto.server 'moto[server]>=5.2.5'
need_py awscrt awscrt
command -v aws >/dev/null || python3 -m pip install --quiet --disable-pip-version-check awscli

if [ -z "$SP" ]; then cargo build --release --locked -q -p sealpipe-cli; SP=$PWD/target/release/sealpipe; fi
export SEALPIPE_KEYRING="$WORK/keyring.json" HOME="$WORK/home"
mkdir -p "$HOME"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_ENDPOINT_URL AWS_CA_BUNDLE

free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
wait_http() { for _ in $(seq 100); do curl -sk "$1" >/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
verdict() { python3 -c "import sys; a, op, b = float(sys.argv[1]), sys.argv[2], float(sys.argv[3]); print('HOLDS' if (a >= b if op == '>=' else a <= b) else 'MISSED')" "$1" "$2" "$3"; }
# Wall seconds of a command.
wall() { python3 - "$@" <<'PY'
import subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
if r.returncode != 0:
    sys.stderr.write(r.stderr.decode()[-2000:]); sys.exit(r.returncode)
print(f"{time.perf_counter() - t:.3f}")
PY
}
# User+sys CPU seconds of a command (its own process tree).
cpu() { python3 - "$@" <<'PY'
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
if r.returncode != 0:
    sys.stderr.write(r.stderr.decode()[-2000:]); sys.exit(r.returncode)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{u.ru_utime + u.ru_stime:.3f}")
PY
}
# CPU seconds a running process has used so far (user+sys, from /proc).
proc_cpu() { python3 -c "import os, sys; f = open(f'/proc/{sys.argv[1]}/stat').read().rsplit(')', 1)[1].split(); print((int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK'))" "$1"; }
median() { python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" "$@"; }

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

# ---------------------------------------------------------------- 1. small objects
MOTO_PORT=$(free_port)
python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >/dev/null 2>&1 & PIDS+=($!)
MOTO_PID=$!
MOTO=http://127.0.0.1:$MOTO_PORT
wait_http "$MOTO"
PROXY_LOG=$WORK/proxy.out
python3 cli/tests/common/faultproxy.py --upstream "$MOTO_PORT" \
  --schedule-json "{\"rules\": [{\"op\": \"*\", \"action\": \"delay\", \"ms\": $LATENCY_MS}]}" > "$PROXY_LOG" 2>&1 & PIDS+=($!)
PROXY_PID=$!
for _ in $(seq 100); do grep -q LISTENING "$PROXY_LOG" && break; sleep 0.1; done
PROXY=http://127.0.0.1:$(awk '/LISTENING/ {print $2}' "$PROXY_LOG")

# Buckets and a KMS key, and the small objects (1-4 KiB, most not a multiple of 16), put straight into moto.
python3 - "$MOTO" "$SMALL" "$LATENCY_SMALL" <<'PY'
import boto3, concurrent.futures, os, random, sys
url, n, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=url)
kms = boto3.client("kms", endpoint_url=url)
for b in ["src", "src-lat", "aws-direct", "sp-direct", "aws-lat", "sp-lat", "big"]:
    s3.create_bucket(Bucket=b)
key = kms.create_key()["KeyMetadata"]["KeyId"]
kms.create_alias(AliasName="alias/bench", TargetKeyId=key)
rng = random.Random(21)
def put(args):
    bucket, i = args
    s3.put_object(Bucket=bucket, Key=f"hls/seg-{i:06d}.ts", Body=os.urandom(rng.randint(1024, 4096)))
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(put, [("src", i) for i in range(n)] + [("src-lat", i) for i in range(m)]))
PY

small_row() { # NAME ENDPOINT SRC N
  local name=$1 ep=$2 src=$3 n=$4
  local t_aws t_sp
  t_aws=$(wall aws s3 cp --recursive --only-show-errors --endpoint-url "$ep" "s3://$src/" "s3://aws-$name/")
  [ "$ep" = "$PROXY" ] && curl -s -X POST "$PROXY/__fault/reset" >/dev/null && curl -s -X POST "$PROXY/__fault/schedule" \
    -d "{\"rules\": [{\"op\": \"*\", \"action\": \"delay\", \"ms\": $LATENCY_MS}]}" >/dev/null
  local moto0 proxy0 moto1 proxy1
  moto0=$(proc_cpu "$MOTO_PID"); proxy0=$(proc_cpu "$PROXY_PID")
  t_sp=$(wall "$SP" encrypt "s3://$src/" --to "s3://sp-$name/" --endpoint-url "$ep" --force-path-style \
    --kms-key alias/bench --manifest "$WORK/small-$name.jsonl" --quiet $SP_FLAGS)
  moto1=$(proc_cpu "$MOTO_PID"); proxy1=$(proc_cpu "$PROXY_PID")
  local r_aws r_sp
  r_aws=$(python3 -c "print(f'{$n / $t_aws:.1f}')"); r_sp=$(python3 -c "print(f'{$n / $t_sp:.1f}')")
  echo "$name: $n objects: aws s3 cp --recursive ${t_aws} s (${r_aws} objects/s); sealpipe encrypt ${t_sp} s (${r_sp} objects/s) = $(ratio "$r_sp" "$r_aws") x aws"
  # Where sealpipe's wall time went: the emulator (moto is one Python
  # process: one core at most, by its GIL) and the proxy, busy for how much of it.
  python3 -c "import sys; m, p, t = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]); print(f'   during sealpipe: moto busy {m:.1f} CPU s = {m / t:.0%} of the wall time, the proxy {p:.1f} CPU s = {p / t:.0%}')" \
    "$(python3 -c "print($moto1 - $moto0)")" "$(python3 -c "print($proxy1 - $proxy0)")" "$t_sp"
  SMALL_RATIO[$name]=$(ratio "$r_sp" "$r_aws")
}
declare -A SMALL_RATIO
echo
echo "== 1. small objects S3 -> S3, default flags (a fresh KMS data key per object)"
small_row direct "$MOTO" src "$SMALL"
small_row lat "$PROXY" src-lat "$LATENCY_SMALL"
python3 - "$PROXY" "$LATENCY_SMALL" <<'PY'
import collections, json, sys, urllib.request
log = json.load(urllib.request.urlopen(sys.argv[1] + "/__fault/log"))
ops = collections.Counter(e["op"] for e in log)
n = int(sys.argv[2])
print("   sealpipe's requests per object behind the proxy: " + ", ".join(f"{op} {c / n:.2f}" for op, c in ops.most_common()))
PY

# ---------------------------------------------------------------- 2. CPU per GiB over HTTPS
echo
echo "== 2. one ${S3_MIB} MiB file encrypted and uploaded over HTTPS (local CA), client CPU s/GiB, median of $ROUNDS"
( cd "$WORK"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=sealpipe bench CA" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null )
TLS_PORT=$(free_port)
python3 -m moto.server -H 127.0.0.1 -p "$TLS_PORT" -c "$WORK/server.pem" -k "$WORK/server.key" >/dev/null 2>&1 & PIDS+=($!)
TLS=https://127.0.0.1:$TLS_PORT
wait_http "$TLS"
AWS_CA_BUNDLE=$WORK/ca.pem python3 -c "import boto3; boto3.client('s3', endpoint_url='$TLS').create_bucket(Bucket='tls')"
IN=$WORK/in.bin
head -c "$((S3_MIB << 20))" /dev/urandom > "$IN"
cat > "$WORK/crt_put.py" <<'PY'
# A plain PUT with the AWS Common Runtime S3 client (multipart, CRC32C trailer), over TLS.
import sys
from awscrt import auth, http, io, s3
url_port, ca, path, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
import os
elg = io.EventLoopGroup()
bootstrap = io.ClientBootstrap(elg, io.DefaultHostResolver(elg))
creds = auth.AwsCredentialsProvider.new_static("test", "test")
tls_opts = io.TlsContextOptions()
tls_opts.override_default_trust_store_from_path(ca_filepath=ca)
tls = io.ClientTlsContext(tls_opts)
client = s3.S3Client(bootstrap=bootstrap, region="us-east-1",
                     signing_config=s3.create_default_s3_signing_config(region="us-east-1", credential_provider=creds),
                     tls_mode=s3.S3RequestTlsMode.ENABLED, tls_connection_options=tls.new_connection_options(),
                     part_size=16 << 20, throughput_target_gbps=10)
size = os.path.getsize(path)
headers = http.HttpHeaders([("Host", f"localhost:{url_port}"), ("Content-Length", str(size)), ("Content-Type", "application/octet-stream")])
req = http.HttpRequest("PUT", f"/tls/{key}", headers)
done = client.make_request(type=s3.S3RequestType.PUT_OBJECT, request=req, send_filepath=path,
                           checksum_config=s3.S3ChecksumConfig(algorithm=s3.S3ChecksumAlgorithm.CRC32C, location=s3.S3ChecksumLocation.TRAILER))
done.finished_future.result()
PY
declare -A CPU HTTPS
for round in $(seq "$ROUNDS"); do
  CPU[crt]+=" $(cpu python3 "$WORK/crt_put.py" "$TLS_PORT" "$WORK/ca.pem" "$IN" "crt-$round.bin")"
  CPU[aws]+=" $(AWS_CA_BUNDLE=$WORK/ca.pem cpu aws s3 cp --only-show-errors --endpoint-url "$TLS" "$IN" "s3://tls/aws-$round.bin")"
  for d in sha256 blake3 crc64nvme; do
    CPU[$d]+=" $(cpu "$SP" encrypt "$IN" --to "s3://tls/sp-$d-$round/" --endpoint-url "$TLS" --ca-bundle "$WORK/ca.pem" \
      --force-path-style --digest "$d" --force --manifest "$WORK/tls-$d.jsonl" --quiet)"
  done
done
gib=$(python3 -c "print($S3_MIB / 1024)")
per_gib() { python3 -c "print(f'{$1 / $gib:.2f}')"; }
crt=$(per_gib "$(median ${CPU[crt]})")
echo "awscrt PUT (plain, CRC32C):   ${crt} CPU s/GiB"
echo "aws s3 cp:                    $(per_gib "$(median ${CPU[aws]})") CPU s/GiB"
for d in sha256 blake3 crc64nvme; do
  v=$(per_gib "$(median ${CPU[$d]})")
  echo "sealpipe --digest $d: ${v} CPU s/GiB = $(ratio "$v" "$crt") x awscrt"
  HTTPS[$d]=$(ratio "$v" "$crt")
done

# ---------------------------------------------------------------- 3. RSS with many files queued
echo
echo "== 3. peak RSS, ${QUEUED} small local files, --memory ${QUEUED_MEMORY}"
python3 - "$WORK/queued" "$QUEUED" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for d in range(0, n, 1000):
    os.makedirs(f"{root}/d{d // 1000:04d}", exist_ok=True)
    for i in range(d, min(d + 1000, n)):
        with open(f"{root}/d{d // 1000:04d}/s{i:06d}.ts", "wb") as f:
            f.write(os.urandom(200))
PY
rss=$(python3 - "$SP" "$WORK" "$QUEUED_MEMORY" <<'PY'
import resource, subprocess, sys
sp, work, mem = sys.argv[1:]
subprocess.run([sp, "encrypt", f"{work}/queued", "--out", f"{work}/queued-enc", "--memory", mem, "--reuse-key", "--quiet",
                "--manifest", f"{work}/queued.jsonl"], check=True, stdout=subprocess.DEVNULL)
print(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f}")
PY
)
mem_mib=$(python3 -c "import sys; sys.path.insert(0, '.'); s='$QUEUED_MEMORY'.lower(); n=float(s.rstrip('mib').rstrip('gib')); print(int(n * (1024 if 'g' in s else 1)))")
echo "peak RSS ${rss} MiB with --memory ${QUEUED_MEMORY}"

echo
echo "== targets of issue 21 (ratios from this run)"
echo "small objects behind ${LATENCY_MS} ms, sealpipe / aws s3 cp objects/s = ${SMALL_RATIO[lat]} (target >= 3.0): $(verdict "${SMALL_RATIO[lat]}" '>=' 3.0)"
echo "small objects on moto directly = ${SMALL_RATIO[direct]} (target >= 1.0): $(verdict "${SMALL_RATIO[direct]}" '>=' 1.0)"
best=$(python3 -c "print(min(${HTTPS[blake3]}, ${HTTPS[crc64nvme]}))")
echo "HTTPS CPU/GiB, --digest blake3 or crc64nvme / awscrt = ${best} (target <= 0.9): $(verdict "$best" '<=' 0.9)"
echo "HTTPS CPU/GiB, --digest sha256 / awscrt = ${HTTPS[sha256]} (target <= 1.3): $(verdict "${HTTPS[sha256]}" '<=' 1.3)"
echo "peak RSS ${QUEUED} queued = ${rss} MiB within --memory ${mem_mib} MiB: $(verdict "$rss" '<=' "$mem_mib")"
