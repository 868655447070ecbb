#!/usr/bin/env bash
# Build the sealpipe container image with podman on a machine with no
# registry access (issue 22): the same runtime image the Dockerfile makes
# (non-root user 10001, the system CA bundle, `sealpipe` as the entrypoint),
# but from the binary built here (cargo build --release -p sealpipe-cli),
# its loader and the libraries ldd lists, on an empty (scratch) base: a
# glibc binary alone fails there with "exec: no such file or directory".
#
#   scripts/build-image.sh [TAG]      (default localhost/sealpipe:dev)
#   SEALPIPE_IMAGE_BIN=target/debug/sealpipe scripts/build-image.sh   (another binary)
#
# Needs podman and runc (apt-get install -y podman runc). This machine's
# podman settings are scripts/podman/containers.conf.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-localhost/sealpipe:dev}"
bin="${SEALPIPE_IMAGE_BIN:-target/release/sealpipe}"
command -v podman >/dev/null || { echo "build-image.sh: podman is not installed (apt-get install -y podman runc)" >&2; exit 1; }
if [ -z "${SEALPIPE_IMAGE_BIN:-}" ]; then
  cargo build --release --locked -p sealpipe-cli
fi
[ -x "$bin" ] || { echo "build-image.sh: $bin: no such binary" >&2; exit 1; }
export CONTAINERS_CONF="$PWD/scripts/podman/containers.conf"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/root"
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$ctx/home/sealpipe"
chmod 1777 "$root/tmp"
install -m 0755 "$bin" "$root/usr/local/bin/sealpipe"
# The dynamic loader and every library the binary links, at the paths it asks for.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/nonexistent\nsealpipe:x:10001:10001:sealpipe:/home/sealpipe:/nonexistent\n' > "$root/etc/passwd"
printf 'root:x:0:\nsealpipe:x:10001:\n' > "$root/etc/group"
cat > "$ctx/Containerfile" <<'CONTAINERFILE'
FROM scratch
COPY root/ /
COPY --chown=10001:10001 home/ /home/
ENV HOME=/home/sealpipe SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
WORKDIR /home/sealpipe
ENTRYPOINT ["/usr/local/bin/sealpipe"]
CMD ["--help"]
CONTAINERFILE
podman --runtime runc --cgroup-manager=cgroupfs build --quiet --tag "$tag" "$ctx" >/dev/null
echo "build-image.sh: built $tag from $bin ($(podman image inspect --format '{{.Size}}' "$tag") bytes; $(ls "$root"/lib*/ "$root"/lib/*/ 2>/dev/null | grep -c '\.so') libraries)"
