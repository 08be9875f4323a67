# The production model server: the official TensorFlow Serving image, pinned to our TensorFlow
# (2.21), with our generated config files. TF Serving's own entrypoint is kept unchanged: it runs
#   tensorflow_model_server --port=8500 --rest_api_port=8501 \
#     --model_name=${MODEL_NAME} --model_base_path=${MODEL_BASE_PATH}/${MODEL_NAME} "$@"
# and --model_config_file (in CMD below) takes precedence over the model name/base path flags.
#
#   docker build -f docker/tfserving.Dockerfile -t recsys/tfserving:2.21.0 .
#   docker run -p 127.0.0.1:8500:8500 -p 127.0.0.1:8501:8501 \
#     --mount type=bind,source="$PWD/runs/models/ctr",target=/models/ctr recsys/tfserving:2.21.0
FROM tensorflow/serving:2.21.0

# Models live in /models/<name>/<version>/ (MODEL_BASE_PATH=/models in the base image).
ENV MODEL_NAME=ctr

# models.config (name ctr, base path /models/ctr), batching and monitoring: docker/gen_config.py.
COPY docker/config/ /config/

# 8500: gRPC (PredictionService, ModelService); 8501: REST (/v1/models/...).
EXPOSE 8500 8501

# The image has bash but neither curl nor python: speak HTTP over bash's /dev/tcp. Healthy once
# the model has a version AVAILABLE.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8501 && printf 'GET /v1/models/%s HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' \"$MODEL_NAME\" >&3 && grep -q '\"AVAILABLE\"' <&3"]

CMD ["--model_config_file=/config/models.config", \
     "--model_config_file_poll_wait_seconds=60", \
     "--enable_batching=true", \
     "--batching_parameters_file=/config/batching.config", \
     "--monitoring_config_file=/config/monitoring.config"]
