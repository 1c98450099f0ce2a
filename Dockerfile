# codexflow: one image for the worker, the API and the migrations (docker-compose.yml picks the
# command). Python 3.11, Node and the codex binary pinned by package-lock.json.

# Node comes from its official image: same Debian release (bookworm) as the Python image, so the
# binary runs as is. codex itself is a static native binary; Node is here for npm and for the
# JavaScript projects codex builds and tests.
FROM node:22.21.1-bookworm-slim AS node

FROM python:3.11.14-slim-bookworm

# git: every stage ends with a git checkpoint of the workspace. bubblewrap: the sandbox each codex
# task runs in (docker-compose.yml gives the worker what it needs).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates bubblewrap \
    && rm -rf /var/lib/apt/lists/*

COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && node --version && npm --version

WORKDIR /opt/codexflow

# codex exactly as package-lock.json pins it. npm installs the native binary of this machine's
# architecture (@openai/codex-linux-x64 or -arm64); it is linked as /usr/local/bin/codex because a
# non-editable `pip install .` puts config.py in site-packages, where the node_modules lookup of
# core/codex_cli.py cannot see this directory (CODEXFLOW_CODEX_BIN below names it).
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
    && ln -s "$(ls -d /opt/codexflow/node_modules/@openai/codex-linux-*/vendor/*/bin/codex)" /usr/local/bin/codex \
    && mkdir -p /tmp/codex-version && CODEX_HOME=/tmp/codex-version codex --version \
    && rm -rf /tmp/codex-version /root/.npm

# The package itself (its dependencies from PyPI, as pyproject.toml pins them).
COPY . /tmp/src
RUN pip install --no-cache-dir /tmp/src && rm -rf /tmp/src && codexflow --help >/dev/null

# An unprivileged user; the named volumes mounted on these directories take their ownership.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/codexflow --shell /usr/sbin/nologin codexflow \
    && mkdir -p /var/lib/codexflow/workspaces /var/lib/codexflow/repos /var/lib/codexflow/codex-home \
    && chown -R codexflow:codexflow /var/lib/codexflow

# Defaults for this image's layout; everything else comes from the environment (config.py).
# Relative defaults (.codexflow/...) land in the working directory, the user's home.
ENV CODEXFLOW_WORKSPACES_ROOT=/var/lib/codexflow/workspaces \
    CODEXFLOW_REPOS_ROOT=/var/lib/codexflow/repos \
    CODEXFLOW_CODEX_HOME=/var/lib/codexflow/codex-home \
    CODEXFLOW_CODEX_BIN=/usr/local/bin/codex \
    CODEXFLOW_LOG_FORMAT=json \
    CODEX_HOME=/var/lib/codexflow/codex-home \
    PYTHONUNBUFFERED=1

USER codexflow
WORKDIR /var/lib/codexflow
# 8000: the API (and its /metrics); 9464: a worker's /metrics when CODEXFLOW_WORKER_METRICS_ADDRESS is set.
EXPOSE 8000 9464
ENTRYPOINT ["codexflow"]
CMD ["worker"]
