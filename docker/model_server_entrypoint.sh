#!/bin/bash
# The embedded model server's entrypoint, the same contract as TF Serving's tf_serving_entrypoint.sh:
# ports 8500/8501, MODEL_NAME and MODEL_BASE_PATH from the environment, extra flags appended.
# The embedded server refuses --model_base_path together with --model_config_file (TF Serving
# silently ignores the former), so the name/base-path pair is only added without a config file.
set -euo pipefail

args=(--port=8500 --rest_api_port=8501)
case " $* " in
  *" --model_config_file="* | *" --model_config_file "*) ;;
  *) args+=("--model_name=${MODEL_NAME}" "--model_base_path=${MODEL_BASE_PATH}/${MODEL_NAME}") ;;
esac
exec python -m serving.model_server "${args[@]}" "$@"
