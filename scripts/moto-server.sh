#!/usr/bin/env bash
# Start a local moto server (S3 + KMS mock with the real AWS wire protocol)
# for trying sealpipe's AWS path by hand; the tests in cli/tests/s3.rs start
# their own. Usage: scripts/moto-server.sh [PORT]   (default: a free port)
# Then, in another shell:
#   export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
#   export AWS_ENDPOINT_URL=http://127.0.0.1:PORT
#   sealpipe encrypt media/ --to s3://bucket/prefix/ --kms-key alias/x --force-path-style
set -euo pipefail
python3 -c "import moto.server, boto3" 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
port="${1:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
echo "moto: http://127.0.0.1:$port" >&2
exec python3 -m moto.server -H 127.0.0.1 -p "$port"
