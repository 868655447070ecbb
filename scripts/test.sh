#!/usr/bin/env bash
# The whole test suite: unit, known-answer, edge-size and CLI tests, the
# interop tests against openssl and Python `cryptography`, then the cipher
# tests again with the portable (software) AES and GHASH backends forced,
# so every backend the code can select is proven byte-identical.
set -euo pipefail
# Tests reach loopback only: the AWS SDK never probes the instance metadata address.
export AWS_EC2_METADATA_DISABLED=true
cd "$(dirname "$0")/.."

need_py() { python3 -c "import $1" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check "$2"; }
command -v openssl >/dev/null || { echo "test.sh: openssl is required for the interop tests" >&2; exit 1; }
need_py cryptography cryptography
# The job definitions of `sealpipe deploy` are validated against the Kubernetes API schemas (cli/tests/deploy.rs).
need_py kubernetes_validate kubernetes-validate
# S3 + KMS integration tests (cli/tests/s3.rs) run against a local moto server.
# moto >= 5.2.5: 5.2.0-5.2.4 answer CompleteMultipartUpload with an XML root the Rust SDK refuses.
python3 -c "import moto.server, boto3, sys; sys.exit(tuple(int(x) for x in moto.__version__.split('.')[:3]) < (5, 2, 5))" 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --upgrade 'moto[server]>=5.2.5'

# Every step runs even when an earlier one fails; the script fails if any did.
status=0
# Engine modules import one way (no cycles, nothing pointing up the layers).
python3 scripts/check-layers.py || status=1
# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --workspace --locked --no-fail-fast || status=1
# The criterion benches (their own package, not built by `cargo test`) still compile.
cargo test --locked -p sealpipe-benches --benches --no-run || status=1
# The RustCrypto crates (the `soft` kernel) on their software backends,
# selected at build time, as on a CPU without AES-NI: modes.rs then proves
# only `soft` (the hand-written kernels are the same code in both builds).
# The environment route (SEALPIPE_KERNEL) is tested in cli/tests/bench.rs.
RUSTFLAGS='--cfg aes_backend="soft" --cfg polyval_backend="soft"' CARGO_TARGET_DIR=target/soft \
  cargo test --locked -p sealpipe-engine --test modes || status=1
exit $status
