#!/bin/bash
# The embedded model server's entrypoint, the same contract as TF Serving's tf_serving_entrypoint.sh:
# ports 8500/8501, MODEL_NAME and MODEL_BASE_PATH from the environment, extra flags appended.
# As in TF Serving, the name/base-path pair is always passed and --model_config_file, when given,
# takes precedence (the server then ignores --model_name and --model_base_path).
# --bind_address=0.0.0.0: the embedded server binds 127.0.0.1 unless told (ours), and a container
# is reached through its published ports, so the image listens on every interface as TF Serving does.
set -euo pipefail

exec python -m serving.model_server --port=8500 --rest_api_port=8501 --bind_address=0.0.0.0 \
  "--model_name=${MODEL_NAME}" "--model_base_path=${MODEL_BASE_PATH}/${MODEL_NAME}" "$@"
