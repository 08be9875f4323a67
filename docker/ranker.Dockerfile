# The ranking service: recall, TF Serving client, rules. Core dependencies only: no TensorFlow.
# Settings come from RANKER_* environment variables (recommender_client/service/settings.py).
#
#   docker build -f docker/ranker.Dockerfile -t recsys/ranker:latest .
#   docker run -p 127.0.0.1:8080:8080 -v "$PWD/runs/ranker:/srv/ranker:ro" \
#     -e RANKER_ARTIFACTS_DIR=/srv/ranker/artifacts -e RANKER_GRPC_TARGET=host:8500 recsys/ranker:latest
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python3 -m venv /opt/venv && pip install --upgrade pip

WORKDIR /src
# Core dependencies (pyproject's [project] dependencies, no extras) in their own layer.
COPY pyproject.toml constraints.txt README.md /src/
COPY docker/requirements.py /src/docker/requirements.py
RUN python docker/requirements.py pyproject.toml > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The service plus the pure-Python feature contract it imports; the TensorFlow packages stay out.
COPY recommender_client /src/recommender_client
COPY training/__init__.py training/features.py training/atomic_files.py training/context_features.py /src/training/
RUN pip install --no-deps . \
    && cd / && rm -rf /src \
    && python -c "import importlib.util as u, recommender_client.service.app; assert u.find_spec('tensorflow') is None, 'tensorflow must not be installed'"

RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ranker
USER 10001
WORKDIR /

EXPOSE 8080

# Liveness of the HTTP process (readiness, i.e. the model is AVAILABLE, is GET /readyz).
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["recsys-ranker", "--host", "0.0.0.0", "--port", "8080"]
CMD []
