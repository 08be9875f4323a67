# The embedded model server (Python + TensorFlow), a stand-in for tensorflow/serving where that
# image cannot be pulled: same flags, ports (8500 gRPC, 8501 REST), MODEL_NAME/MODEL_BASE_PATH,
# /models/<name>/<version>/ layout and /config files, so compose can swap one for the other.
#
#   docker build -f docker/model-server.Dockerfile -t recsys/model-server:latest .
#   docker build --build-arg BASE_IMAGE=recsys/base:bookworm ...   # any Debian-like image with python3 + venv
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=1

RUN python3 -m venv /opt/venv && pip install --upgrade pip

WORKDIR /src
# Dependencies first, in their own layer: a code change does not re-download TensorFlow.
COPY pyproject.toml constraints.txt README.md /src/
COPY docker/requirements.py /src/docker/requirements.py
RUN python docker/requirements.py pyproject.toml serving > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The server imports nothing outside serving/.
COPY serving /src/serving
RUN pip install --no-deps . \
    && cd / && rm -rf /src \
    && python -c "import serving.model_server.server"

COPY docker/model_server_entrypoint.sh /usr/local/bin/model_server_entrypoint.sh
COPY docker/config/ /config/
RUN chmod 0755 /usr/local/bin/model_server_entrypoint.sh \
    && chmod -R a+rX /config \
    && mkdir -p /models \
    && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin serving

ENV MODEL_NAME=ctr \
    MODEL_BASE_PATH=/models

USER 10001
WORKDIR /
EXPOSE 8500 8501

HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8501 && printf 'GET /v1/models/%s HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' \"$MODEL_NAME\" >&3 && grep -q '\"AVAILABLE\"' <&3"]

ENTRYPOINT ["/usr/local/bin/model_server_entrypoint.sh"]
CMD ["--model_config_file=/config/models.config", \
     "--model_config_file_poll_wait_seconds=60", \
     "--enable_batching=true", \
     "--batching_parameters_file=/config/batching.config", \
     "--monitoring_config_file=/config/monitoring.config"]
