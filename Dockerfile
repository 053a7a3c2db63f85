# syntax=docker/dockerfile:1
#
# The operator's image. Build it with `make image` (docker build where a Docker daemon runs, else
# buildah; see README "The image"), or directly:
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
# The dependencies first, in a layer of their own that only pyproject.toml invalidates: an edit of
# the operator's code (or of the README) then rebuilds only the small layer below.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      >requirements.txt \
 && /opt/venv/bin/pip install -r requirements.txt
COPY operator/ operator/
# Smaller, with nothing the operator runs: no pip/setuptools in the runtime venv, no tests of the
# installed packages, and no kubernetes.aio (an asyncio copy of the whole client, over half of the
# kubernetes package; the operator uses the synchronous client, kopf its own aiohttp client).
# Importing every operator module afterwards fails the build if anything it imports was removed.
# Bytecode is compiled here because the read-only root filesystem cannot cache it at run time.
# pyproject.toml names README.md as the package's readme: the build needs a file, not its text.
RUN touch README.md \
 && /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/pip uninstall -q -y pip setuptools \
 && site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
 && rm -rf "$site/kubernetes/aio" \
 && find "$site/kubernetes" -name '*_test.py' -delete \
 && /opt/venv/bin/python -m compileall -q /opt/venv \
 && /opt/venv/bin/python -c 'import importlib, pkgutil, rollback_verifier as p; \
      [importlib.import_module(m.name) for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".") \
       if not m.name.endswith("__main__")]'

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
