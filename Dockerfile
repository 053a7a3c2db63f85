# syntax=docker/dockerfile:1
#
# NOT BUILT HERE: the machines that develop and test this project have no container engine, so this
# Dockerfile has never been built or run by the project's tests. Build it on a machine with one:
#   docker build -t registry.ide-newton.ts.net/lab/rollback-verifier:0.1.0 .
#
# The image runs as uid/gid 10001 (user `rollback-verifier`), the chart's runAsUser/runAsGroup, and works
# with a read-only root filesystem: it writes only to /tmp (HOME, git's and ssh's files) and to
# /var/cache/rollback-verifier (the git cache), both emptyDirs in the chart.
# Pin the base images by digest (python:3.11-slim@sha256:...) when you build for production.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# pyproject.toml names README.md as the package's readme: it must exist at the repo root.
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN /opt/venv/bin/pip install . \
 && /opt/venv/bin/python -m compileall -q /opt/venv

FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 rollback-verifier \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin rollback-verifier \
 && mkdir -p /var/cache/rollback-verifier /etc/rollback-verifier \
 && chown 10001:10001 /var/cache/rollback-verifier
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GIT_TERMINAL_PROMPT=0
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["rollback-verifier"]
CMD ["run"]
