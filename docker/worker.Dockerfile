# Worker image (`worker miner|validator`): the Rust worker linked against the CUDA libtorch
# shipped in the PyTorch wheel (tch's LIBTORCH_USE_PYTORCH=1), on the matching CUDA runtime.
# Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t ghcr.io/templar/subnet-worker:0.1.0 .
# The operator runs it as UID 1000 with a read-only root filesystem; /tmp, /dev/shm and the
# checkpoint directory are volumes (see operator/README.md for the env/file contract).
ARG TORCH_VERSION=2.13.0
ARG CUDA_FLAVOR=cuda12.8-cudnn9
ARG BUILD_IMAGE=pytorch/pytorch:${TORCH_VERSION}-${CUDA_FLAVOR}-devel
ARG RUNTIME_IMAGE=pytorch/pytorch:${TORCH_VERSION}-${CUDA_FLAVOR}-runtime

FROM ${BUILD_IMAGE} AS build
ARG RUST_VERSION=1.95.0
ENV CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup PATH=/usr/local/cargo/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates build-essential pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/* \
    && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain ${RUST_VERSION}
WORKDIR /src
COPY . .
ENV LIBTORCH_USE_PYTORCH=1
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p worker \
    && install -D -m 0755 target/release/worker /out/worker

FROM ${RUNTIME_IMAGE}
# libtorch comes from the wheel inside the runtime image; expose it at a fixed path.
RUN ln -s "$(python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" /opt/libtorch \
    && groupadd --gid 1000 worker \
    && useradd --uid 1000 --gid 1000 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin worker
ENV LD_LIBRARY_PATH=/opt/libtorch \
    HOME=/tmp \
    WORKER_BUNDLED_DATASET=/usr/share/templar/datasets/bundled \
    DATA_CACHE_DIR=/tmp/dataset-cache \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=build /out/worker /usr/local/bin/worker
# The bundled dataset (what `data: {bundled: {}}` manifests train on); real runs name theirs
# by URI in the run manifest.
COPY worker/data/bundled /usr/share/templar/datasets/bundled
USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/worker"]
