# syntax=docker/dockerfile:1
# The gateway image: `gateway serve` by default, `gateway db upgrade` and the Celery worker/beat
# (command: celery) from the same image. The Helm chart in helm/gateway runs it.
#
#   docker build -t deepseek-gateway:0.1.0 .
#   docker run --rm -v gateway-data:/data deepseek-gateway:0.1.0 db upgrade    # SQLite in /data
#   docker run --rm -v gateway-data:/data -p 8000:8000 deepseek-gateway:0.1.0  # gateway serve
#
# Everything is downloaded at build time (PyTorch CPU build, dependencies, the embedded model);
# a running container never downloads anything.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtual environment in /opt/venv ------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_KERNEL_DIR=/opt/venv/kernels
# g++ builds the C++ CPU kernel here; the runtime image gets the library, not the compiler
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# The CPU build of PyTorch first (an unpinned torch from PyPI pulls a multi-GB CUDA build); the
# pin matches pyproject.toml, which pip then finds satisfied. Images for GPU pool workers
# (docs/pools.md) pass the wheel index of their stack: --build-arg TORCH_INDEX_URL=.../whl/cu128
# (CUDA) or .../whl/rocm6.4 (ROCm); Ascend NPUs add torch_npu and the CANN runtime on top.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.13.0 --index-url ${TORCH_INDEX_URL}

# Dependencies in their own layer: code changes do not reinstall them.
COPY pyproject.toml README.md /src/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# The project itself (a regular, non-editable install: migrations and static files are package data).
COPY . /src
RUN pip install --no-deps /src \
 && gateway models fetch \
 && python -c "from kernels import cpu_ops as k; assert k.load(), 'kernel build failed'" \
 && gateway --help > /dev/null

# ---- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="deepseek-gateway" \
      org.opencontainers.image.description="Gateway for DeepSeek-V4-family reasoning models" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed, non-root user; the Helm chart's securityContext uses the same ids (runAsUser 10001).
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gateway \
 && mkdir -p /data \
 && chown 10001:10001 /data

COPY --from=build /opt/venv /opt/venv

# HOME=/tmp: Kubernetes runs the image with a read-only root filesystem and /tmp as an emptyDir,
# so anything that caches under $HOME writes there.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    GATEWAY_DATA_DIR=/data \
    GATEWAY_KERNEL_DIR=/opt/venv/kernels \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000

USER 10001:10001
WORKDIR /data
EXPOSE 8000

# For plain `docker run`; Kubernetes uses the chart's probes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GATEWAY_PORT', '8000') + '/healthz', timeout=4)"]

ENTRYPOINT ["gateway"]
CMD ["serve"]
