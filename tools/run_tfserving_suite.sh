#!/usr/bin/env bash
# Run TF Serving's own integration suite (tensorflow_model_server_test.py), unmodified, against
# the embedded server. Nothing of TF Serving is copied into this repository: the script reads
# the test files from a checkout (or a bare mirror) of github.com/tensorflow/serving into a
# scratch directory, lays out the TEST_SRCDIR tree its harness expects (the testdata entries
# are symlinks to ../shared/testdata/tfserving), and points the harness's binary path
# (model_servers/tensorflow_model_server) at `python -m serving.model_server`.
#
# Usage: tools/run_tfserving_suite.sh SERVING_REPO [SCRATCH_DIR] [-- extra unittest args]
#   SERVING_REPO  a tensorflow/serving work tree, or a bare git directory (read with git show)
#   SCRATCH_DIR   where to build the tree (default: a new mktemp -d)
# Environment: SHARED (default ../shared next to the repo), PYTHON (default .venv/bin/python).
# Needs `portpicker` (the harness imports it); it is installed into the venv when missing.
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
REPO_DIR="$(cd "$(dirname "$0")/.." && pwd)"
SERVING="$1"; shift
SCRATCH="${1:-$(mktemp -d)}"; [[ $# -gt 0 ]] && shift
[[ "${1:-}" == "--" ]] && shift
SHARED="${SHARED:-$REPO_DIR/../shared}"
PYTHON="${PYTHON:-$REPO_DIR/.venv/bin/python}"
TESTDATA="$(cd "$SHARED/testdata/tfserving" && pwd)"

read_file() {  # read_file PATH_IN_REPO > out
  if [[ -d "$SERVING/tensorflow_serving" ]]; then cat "$SERVING/$1"; else git -C "$SERVING" show "HEAD:$1"; fi
}

"$PYTHON" -c "import portpicker" 2>/dev/null || "$PYTHON" -m pip install --quiet portpicker

SRC="$SCRATCH/srcdir/tf_serving/tensorflow_serving"
PKG="$SCRATCH/py/tensorflow_serving"
mkdir -p "$SRC/model_servers" "$SRC/servables/tensorflow/testdata" "$PKG/model_servers/test_util" "$SCRATCH/tmp"

# The harness imports tensorflow_serving.model_servers.test_util; the installed
# tensorflow_serving package (apis, config) is overlaid so that both resolve.
SITE_PKG="$("$PYTHON" -c 'import os, tensorflow_serving; print(os.path.dirname(tensorflow_serving.__file__))')"
cp -r "$SITE_PKG/." "$PKG/"
touch "$PKG/model_servers/__init__.py" "$PKG/model_servers/test_util/__init__.py"
read_file tensorflow_serving/model_servers/test_util/tensorflow_model_server_test_base.py \
  > "$PKG/model_servers/test_util/tensorflow_model_server_test_base.py"
read_file tensorflow_serving/model_servers/tensorflow_model_server_test.py > "$SCRATCH/tensorflow_model_server_test.py"

for entry in "$TESTDATA"/*; do ln -sfn "$entry" "$SRC/servables/tensorflow/testdata/$(basename "$entry")"; done

cat > "$SRC/model_servers/tensorflow_model_server" <<EOF
#!/usr/bin/env bash
cd "$REPO_DIR" && exec "$PYTHON" -m serving.model_server "\$@"
EOF
chmod +x "$SRC/model_servers/tensorflow_model_server"

cd "$SCRATCH"
TEST_SRCDIR="$SCRATCH/srcdir" PYTHONPATH="$SCRATCH/py:$REPO_DIR" \
  "$PYTHON" tensorflow_model_server_test.py --test_tmpdir="$SCRATCH/tmp" "$@"
