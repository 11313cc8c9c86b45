# subnet-operator image: a static-ish Rust binary on distroless (glibc, no shell, non-root).
# Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t ghcr.io/templar/subnet-operator:0.1.0 .
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Only the operator and its dependencies are compiled (no libtorch needed).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p subnet-operator --bin subnet-operator \
    && install -D -m 0755 target/release/subnet-operator /out/subnet-operator

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/subnet-operator /usr/local/bin/subnet-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/subnet-operator"]
