# syntax=docker/dockerfile:1
# xstock-indexer: `docker build -t xstock-indexer .`, then
#   docker run --rm -v $PWD/indexer.toml:/app/indexer.toml:ro -e DATABASE_URL=... xstock-indexer run
# The config is read from /app/indexer.toml unless INDEXER_CONFIG (or --config) says otherwise.
# Needs BuildKit (the default builder since Docker 23; with docker-compose v1 set
# DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . .
# The wheel carries the indexer alone: the development package (devnet/) is not in it.
RUN pip wheel --wheel-dir /wheels . \
 && ! python -m zipfile -l /wheels/xstock_indexer-*.whl | grep -q '^devnet/'

# The compose `deploy` step (`docker compose` builds this stage by name, `target: devnet`): the
# indexer's wheels plus the development package and the contract artifacts beside it, never in
# the indexer image below. It deploys our contracts on the compose anvil and writes the config.
FROM ${PYTHON_IMAGE} AS devnet
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 indexer \
 && useradd --system --uid 10001 --gid indexer --home-dir /app --create-home --shell /usr/sbin/nologin indexer \
 && mkdir -p /shared && chown indexer:indexer /shared
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels xstock-indexer
COPY --from=builder /src/devnet /app/devnet
COPY --from=builder /src/contracts/artifacts /app/contracts/artifacts
USER 10001:10001
WORKDIR /app
ENTRYPOINT ["python", "-m", "devnet"]
CMD ["deploy", "--help"]

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    METRICS_PORT=9100
# /shared: where compose mounts the devnet config volume (read-only here). A new named volume
# takes the owner of the directory it covers; the devnet stage creates it the same way.
RUN groupadd --system --gid 10001 indexer \
 && useradd --system --uid 10001 --gid indexer --home-dir /app --create-home --shell /usr/sbin/nologin indexer \
 && mkdir -p /shared && chown indexer:indexer /shared
# Only the wheels reach this stage, and only for the install: no compiler, no source tree.
# No version pins needed: pip sees no index here, only the wheels the builder resolved.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels xstock-indexer
# The example configs: docker run -e RPC_URL=... -e DATABASE_URL=... IMAGE --config examples/ethereum.toml run
COPY --from=builder /src/examples/*.toml /app/examples/
USER 10001:10001
WORKDIR /app
EXPOSE 9100
# Serves only when the config sets daemon.metrics_port (= $METRICS_PORT) on 127.0.0.1 or 0.0.0.0.
# Shell form on purpose: the shell expands $METRICS_PORT when the check runs.
# hadolint ignore=DL3025
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${METRICS_PORT}/healthz', timeout=4)" || exit 1
ENTRYPOINT ["indexer"]
CMD ["run"]
