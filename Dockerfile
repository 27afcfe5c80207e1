# The gut-skin literature monitor as a container running the daemon (`monitor start`).
# README "Running as a service" shows how to build, configure and run it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A dedicated unprivileged user; /data holds the config, the database (db/) and the feeds (feeds/).
RUN groupadd --system --gid 10001 monitor \
 && useradd --system --uid 10001 --gid monitor --home-dir /data --no-create-home --shell /usr/sbin/nologin monitor

WORKDIR /src
# queries.toml and taxonomy.toml too: monitor/sample/ links to them (`monitor demo` ships them in the package)
COPY pyproject.toml README.md queries.toml taxonomy.toml ./
COPY monitor ./monitor
# The postgres extra (psycopg 3): the same image runs against SQLite or PostgreSQL (docs/deploy-postgres.md).
RUN pip install ".[postgres]" && rm -rf /src

COPY --chown=monitor:monitor queries.toml taxonomy.toml /data/
RUN install -d -o monitor -g monitor -m 0750 /data/db /data/feeds

USER monitor
WORKDIR /data
ENV MONITOR_CONFIG=/data/queries.toml
# Mount volumes here so the database and feeds outlive the container; the config can be bind-mounted over
# /data/queries.toml. Secrets (NCBI_API_KEY, NCBI_EMAIL, MONITOR_SMTP_PASSWORD) come from the environment.
VOLUME ["/data/db", "/data/feeds"]

# `docker stop` sends SIGTERM: the daemon stops between batches, releases its lease and exits 0 within
# [schedule] stop_seconds (docker's default 10 s grace is enough).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5m --timeout=30s --start-period=1m CMD ["monitor", "status", "--runs", "1"]
CMD ["monitor", "start"]
