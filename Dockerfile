# The sealpipe container image (issue 22): a Rust build stage, then a small
# Debian runtime with CA certificates (S3, KMS and STS over TLS), a non-root
# user and `sealpipe` as the entrypoint. For Kubernetes Indexed Jobs and AWS
# Batch array jobs: `sealpipe deploy kubernetes|batch --image ... -- encrypt ...`
# prints their definitions.
#
#   docker build -t registry.example.com/sealpipe:0.1 .
#   docker run --rm registry.example.com/sealpipe:0.1 --version
#
# Without a registry, scripts/build-image.sh makes the same runtime image
# with podman from the binary built on this machine.
FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sealpipe-cli \
 && install -m 0755 target/release/sealpipe /sealpipe

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --create-home --home-dir /home/sealpipe sealpipe
COPY --from=build /sealpipe /usr/local/bin/sealpipe
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
WORKDIR /home/sealpipe
ENTRYPOINT ["/usr/local/bin/sealpipe"]
CMD ["--help"]
