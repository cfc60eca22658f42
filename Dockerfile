# syntax=docker/dockerfile:1
# Build stage: compilers and pip caches stay here.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY graph graph
COPY auth auth
COPY model model
COPY persistence persistence
COPY training training
COPY failcast failcast
# `pip install .` is the serving set: no scikit-learn or matplotlib (the `train` extra), so
# `failcast train` in this image exits 2 saying so; train elsewhere, against the same database.
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install .

# Final stage: the virtualenv, the migrations, a non-root user; no build tools.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 FAILCAST_HOME=/app \
    FAILCAST_ENV=production FAILCAST_HOST=0.0.0.0
RUN useradd --create-home --uid 10001 failcast
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY alembic.ini ./
COPY alembic alembic
USER failcast
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["failcast", "serve", "--host", "0.0.0.0"]
