#!/bin/bash
# Opt-in end-to-end run of the container stack on this machine (not part of `make test`).
#
# 1. installs Docker (Debian docker.io, plus docker-compose v1 when the compose v2 plugin is
#    missing) and debootstrap if absent; starts dockerd if none answers (and stops it, by PID, at the end)
# 2. builds a local base image: debootstrap of Debian bookworm from the mirror apt already uses,
#    with python3, python3-venv and pip, then `docker import` (no registry pull anywhere)
# 3. builds the ranker, embedded model-server and redis images FROM that base (pip installs from
#    PyPI, redis-server from the Debian mirror)
# 4. trains and exports a tiny model on the host (.venv), builds the recall artefacts; starts the
#    model-server image alone with `recsys-serving-config up` (Docker SDK), checks it, `down`
# 5. starts docker/compose.yaml on 127.0.0.1 with the embedded model server and redis, checks health,
#    publishes version 2 into the mounted model folder and waits for it to be AVAILABLE,
#    requests recommendations and checks them
# 6. tears everything down: compose down -v, work folder, dockerd if this script started it
#
# Usage: sudo docker/e2e.sh   (run from anywhere; needs root, network to the Debian mirror and PyPI)
# Environment:
#   E2E_WORK=/tmp/recsys-e2e     scratch folder (removed after a pass unless E2E_KEEP_WORK=1; kept after a failure)
#   E2E_REBUILD_BASE=1           rebuild the debootstrap base image even if it exists
#   E2E_REMOVE_IMAGES=1          also remove the images built here (default: keep them as a cache)
#   DEBIAN_MIRROR=URL            override the mirror read from /etc/apt/sources.list*
#   E2E_DOCKER_NETWORK=host      network for `docker build` (default host: PyPI through the host)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$REPO/.venv/bin/python}"
WORK="${E2E_WORK:-/tmp/recsys-e2e}"
PROJECT="recsys-e2e"
BASE_IMAGE="recsys/base:bookworm"
RANKER_IMAGE="recsys/ranker:e2e"
SERVER_IMAGE="recsys/model-server:e2e"
REDIS_IMAGE="recsys/redis:e2e"
BUILD_NETWORK="${E2E_DOCKER_NETWORK:-host}"
MODEL_NAME="ctr"
K=5

DOCKERD_PID=""
COMPOSE=()
STACK_UP=0
CHECKS=0

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
ok() { CHECKS=$((CHECKS + 1)); printf '[e2e %s] CHECK %d OK: %s\n' "$(date +%H:%M:%S)" "$CHECKS" "$*"; }
die() { printf '[e2e %s] FAIL: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# wait_until SECONDS DESCRIPTION COMMAND...: poll every 2 s, fail after SECONDS.
wait_until() {
  local limit=$1 what=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= limit)); then
      die "timed out after ${limit}s waiting for: $what"
    fi
    sleep 2
  done
  log "ready after $((SECONDS - start))s: $what"
}

cleanup() {
  local status=$?
  set +e
  if ((STACK_UP)); then
    if ((status != 0)); then
      log "failure: last logs of the stack"
      "${COMPOSE[@]}" logs --tail=40 2>&1 | tail -80
    fi
    log "teardown: compose down --volumes"
    "${COMPOSE[@]}" down --volumes --remove-orphans --timeout 10 2>&1 | sed 's/^/  /'
  fi
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    docker ps -aq --filter label=org.tfserving-recsys.launcher=recsys-e2e-sdk | xargs -r docker rm -f >/dev/null 2>&1
  fi
  if [[ "${E2E_REMOVE_IMAGES:-0}" == 1 ]] && docker info >/dev/null 2>&1; then
    docker image rm -f "$RANKER_IMAGE" "$SERVER_IMAGE" "$REDIS_IMAGE" "$BASE_IMAGE" >/dev/null 2>&1
    log "teardown: removed images"
  fi
  if [[ "${E2E_KEEP_WORK:-0}" != 1 && $status -eq 0 ]]; then
    rm -rf "$WORK"
  else
    rm -rf "$WORK/rootfs"
    log "logs and artefacts kept in $WORK"
  fi
  if [[ -n "$DOCKERD_PID" ]]; then
    log "teardown: stopping dockerd (pid $DOCKERD_PID)"
    kill "$DOCKERD_PID" 2>/dev/null
    local waited=0
    while kill -0 "$DOCKERD_PID" 2>/dev/null && ((waited < 30)); do
      sleep 1
      waited=$((waited + 1))
    done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      log "dockerd did not exit in 30s; sending SIGKILL to pid $DOCKERD_PID"
      kill -9 "$DOCKERD_PID" 2>/dev/null
    fi
  fi
  if ((status == 0)); then
    log "PASSED: $CHECKS checks"
  else
    log "FAILED (exit $status) after $CHECKS passed checks"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The Debian mirror apt uses for bookworm (deb822 .sources or one-line .list), main component.
debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    awk '
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { if (uri != "" && suite && deb) { print uri; exit } uri = ""; suite = 0; deb = 0; next }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
      END { if (uri != "" && suite && deb) print uri }
    ' "$f" | head -n1
  done | head -n1 | grep . && return
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" { sub(/\[[^]]*\][[:space:]]*/, ""); if ($3 == "bookworm") { print $2; exit } }' | grep .
}

# ---------------------------------------------------------------- 1. docker engine and compose
[[ $EUID -eq 0 ]] || die "run as root (installs packages, starts dockerd)"
[[ -x "$PY" ]] || die "no project venv python at $PY (run: make venv)"
[[ "$WORK" == /?*/* || "$WORK" == /tmp* ]] || die "E2E_WORK must be an absolute folder below /, got $WORK"
mkdir -p "$WORK"

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  need_pkgs+=(docker-compose) # Debian bookworm ships compose v1 (1.29), no v2 plugin package
fi
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]} (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >"$WORK/apt.log" 2>&1 ||
    { tail -20 "$WORK/apt.log"; die "apt-get install ${need_pkgs[*]} failed"; }
fi

if docker info >/dev/null 2>&1; then
  log "dockerd already running: using it (and leaving it running)"
else
  log "starting dockerd (log: $WORK/dockerd.log)"
  dockerd >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  wait_until 60 "dockerd answers (pid $DOCKERD_PID)" docker info
fi
log "docker client $(docker version --format '{{.Client.Version}}'), engine $(docker version --format '{{.Server.Version}}')"

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
else
  COMPOSE=(docker-compose)
fi
log "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version | head -n1))"
COMPOSE+=(-f "$REPO/docker/compose.yaml" -p "$PROJECT")

# ---------------------------------------------------------------- 2. local base image
if [[ "${E2E_REBUILD_BASE:-0}" != 1 ]] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "base image $BASE_IMAGE exists: reusing it (E2E_REBUILD_BASE=1 rebuilds)"
else
  mirror="$(debian_mirror)" || die "no bookworm mirror in /etc/apt/sources.list*; set DEBIAN_MIRROR"
  rootfs="$WORK/rootfs"
  log "debootstrap bookworm (minbase + python3, python3-venv, python3-pip) from $mirror"
  rm -rf "$rootfs"
  start=$SECONDS
  timeout 1800 debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
  log "debootstrap done in $((SECONDS - start))s"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # Trust what the host trusts: CAs added locally (e.g. a TLS-inspecting egress proxy) are copied
  # in, and pip (which bundles its own CA list) is pointed at the system store.
  shopt -s nullglob
  local_cas=(/usr/local/share/ca-certificates/*.crt)
  shopt -u nullglob
  if ((${#local_cas[@]})); then
    cp "${local_cas[@]}" "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the rootfs"
    log "base image trusts the host's local CAs: ${local_cas[*]##*/}"
  fi
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi
base_py="$(docker run --rm "$BASE_IMAGE" python3 --version)"
ok "base image $BASE_IMAGE runs: $base_py, $(docker image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}')"

# ---------------------------------------------------------------- 3. images
build() {
  local file=$1 tag=$2 start=$SECONDS
  log "building $tag from docker/$file on $BASE_IMAGE (log: $WORK/build-${file%%.*}.log)"
  DOCKER_BUILDKIT=0 docker build --network "$BUILD_NETWORK" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -f "$REPO/docker/$file" -t "$tag" "$REPO" >"$WORK/build-${file%%.*}.log" 2>&1 ||
    { tail -30 "$WORK/build-${file%%.*}.log"; die "docker build $file failed"; }
  log "built $tag in $((SECONDS - start))s ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}'))"
}
build ranker.Dockerfile "$RANKER_IMAGE"
build model-server.Dockerfile "$SERVER_IMAGE"
build redis.Dockerfile "$REDIS_IMAGE" # Debian redis-server on the same base: no redis image pulled

user="$(docker image inspect --format '{{.Config.User}}' "$RANKER_IMAGE")"
[[ -n "$user" && "$user" != 0 && "$user" != root ]] || die "ranker image runs as root (User=$user)"
[[ "$(docker image inspect --format '{{if .Config.Healthcheck}}yes{{end}}' "$RANKER_IMAGE")" == yes ]] ||
  die "ranker image has no HEALTHCHECK"
docker run --rm --entrypoint python "$RANKER_IMAGE" -c \
  "import importlib.util as u, sys, recommender_client.service.app; sys.exit(u.find_spec('tensorflow') is not None)" ||
  die "ranker image: tensorflow importable or service import failed"
ok "ranker image: user $user, HEALTHCHECK set, service imports, no tensorflow installed"

# ---------------------------------------------------------------- 4. model and artefacts (host)
models="$WORK/models"
ranker_dir="$WORK/ranker"
mkdir -p "$models" "$ranker_dir"
quiet() { "$@" >>"$WORK/pipeline.log" 2>&1 || { tail -30 "$WORK/pipeline.log"; die "failed: $*"; }; }
log "host pipeline: synthetic data, tiny LR model, export version 1, recall artefacts (log: $WORK/pipeline.log)"
start=$SECONDS
quiet "$PY" -m training.data.cli --rows 4000 --users 60 --items 120 --days 10 --seed 0 --out "$WORK/data"
quiet "$PY" -m training.cli --data synthetic --data-path "$WORK/data" --model lr --epochs 1 \
  --batch-size 256 --seed 0 --quiet --out "$WORK/run1"
quiet "$PY" -m export.cli export --model-dir "$WORK/run1" --base "$models" --name "$MODEL_NAME" --version 1
quiet "$PY" -m recommender_client.recall.build --data-dir "$WORK/data" --contract "$WORK/run1" \
  --out "$ranker_dir/artifacts"
cp "$REPO/recommender_client/rerank/default_rules.yaml" "$ranker_dir/rules.yaml"
chmod -R a+rX "$models" "$ranker_dir" # the containers run as uid 10001
log "host pipeline done in $((SECONDS - start))s"
[[ -f "$models/$MODEL_NAME/1/saved_model.pb" ]] || die "no exported version 1"
user_id="$("$PY" -c 'import sys; from recommender_client.recall.artifacts import load_artifacts; print(load_artifacts(sys.argv[1]).user_ids[0])' "$ranker_dir/artifacts")"
ok "exported $models/$MODEL_NAME/1, artefacts for user $user_id"

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- 4b. Python launcher (Docker SDK)
# recsys-serving-config up/down starts the model-server image alone with generated configs (a
# version label included, so --allow_version_labels_for_unavailable_models is on its command
# line), waits for AVAILABLE through the Docker SDK, and removes it.
"$PY" -c 'import docker' 2>/dev/null || quiet "$PY" -m pip install 'docker>=7.1,<8'
sdk_config="$WORK/sdk-config"
sdk_rest="$(free_port)"
quiet "$PY" -m serving.config_cli write --out "$sdk_config" --model "$MODEL_NAME=/models/$MODEL_NAME,label=stable:1"
chmod -R a+rX "$sdk_config"
log "recsys-serving-config up: $SERVER_IMAGE on REST 127.0.0.1:$sdk_rest (log: $WORK/sdk-up.log)"
"$PY" -m serving.config_cli up --config-dir "$sdk_config" --models-dir "$models" --image "$SERVER_IMAGE" \
  --name recsys-e2e-sdk --grpc-port "$(free_port)" --rest-port "$sdk_rest" --timeout 300 \
  --log-file "$WORK/sdk-server.log" >"$WORK/sdk-up.log" 2>&1 || { cat "$WORK/sdk-up.log"; die "recsys-serving-config up failed"; }
grep -q -- "--allow_version_labels_for_unavailable_models=true" "$WORK/sdk-up.log" ||
  die "up did not pass --allow_version_labels_for_unavailable_models for a labelled config"
label_state="$(curl -fsS --max-time 5 "http://127.0.0.1:$sdk_rest/v1/models/$MODEL_NAME/labels/stable")" ||
  die "GET /v1/models/$MODEL_NAME/labels/stable failed on the launched container"
[[ "$label_state" == *'"AVAILABLE"'* ]] || die "label stable is not AVAILABLE: $label_state"
"$PY" -m serving.config_cli down --name recsys-e2e-sdk --log-file "$WORK/sdk-server.log" >>"$WORK/sdk-up.log" 2>&1 ||
  { cat "$WORK/sdk-up.log"; die "recsys-serving-config down failed"; }
[[ -z "$(docker ps -aq --filter label=org.tfserving-recsys.launcher=recsys-e2e-sdk)" ]] || die "down left the container"
ok "recsys-serving-config up/down (Docker SDK): label stable AVAILABLE, container removed"

# ---------------------------------------------------------------- 5. the stack
 { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export MODEL_SERVER_IMAGE="$SERVER_IMAGE" RANKER_IMAGE="$RANKER_IMAGE" REDIS_IMAGE="$REDIS_IMAGE"
export RECSYS_MODELS_DIR="$models" RECSYS_RANKER_DIR="$ranker_dir"
export RECSYS_GRPC_PORT="$(free_port)" RECSYS_REST_PORT="$(free_port)" RECSYS_RANKER_PORT="$(free_port)"
export RECSYS_REDIS_PORT="$(free_port)"
# Settings passed through compose one to one (the rest keep their defaults):
export RANKER_RULES_PATH=/srv/ranker/rules.yaml RANKER_PREDICT_TIMEOUT_S=5 RANKER_REQUEST_DEADLINE_S=10 \
  RANKER_STATUS_TIMEOUT_S=3 RANKER_MAX_K=50
REST="http://127.0.0.1:$RECSYS_REST_PORT"
RANKER="http://127.0.0.1:$RECSYS_RANKER_PORT"
log "compose up: model server $SERVER_IMAGE (gRPC 127.0.0.1:$RECSYS_GRPC_PORT, REST $REST), ranker $RANKER"
STACK_UP=1
"${COMPOSE[@]}" up -d 2>&1 | sed 's/^/  /'

health() { docker inspect --format '{{.State.Health.Status}}' "$("${COMPOSE[@]}" ps -q "$1")"; }
is_healthy() { [[ "$(health "$1")" == healthy ]]; }
wait_until 300 "model-server container healthy" is_healthy model-server
wait_until 120 "ranker container healthy" is_healthy ranker

# GET /v1/models/<name> (TF Serving's REST model status): versions and their states.
versions() { curl -fsS --max-time 5 "$REST/v1/models/$MODEL_NAME"; }
version_state() {
  versions | "$PY" -c 'import json, sys; print(" ".join("%s:%s" % (v["version"], v["state"]) for v in json.load(sys.stdin)["model_version_status"]))'
}
state="$(version_state)"
[[ "$state" == "1:AVAILABLE" ]] || die "expected version 1 AVAILABLE, model status says: $state"
ok "model status (REST GET /v1/models/$MODEL_NAME): $state"

for name in RANKER_RULES_PATH RANKER_PREDICT_TIMEOUT_S RANKER_GRPC_TARGET; do
  docker exec "$("${COMPOSE[@]}" ps -q ranker)" printenv "$name" >/dev/null || die "ranker container lacks $name"
done
if docker exec "$("${COMPOSE[@]}" ps -q ranker)" printenv RANKER_FIXED_NOW >/dev/null 2>&1; then
  die "unset RANKER_FIXED_NOW reached the container (it must keep the Settings default)"
fi
ok "ranker env: set RANKER_* variables passed through, unset ones absent"

ready="$(curl -sS --max-time 10 -w ' %{http_code}' "$RANKER/readyz")"
[[ "$ready" == *" 200" ]] || die "ranker /readyz answered $ready"
[[ "$ready" == *'"state":"AVAILABLE"'* && "$ready" == *'"contract":"ok"'* ]] \
  || die "ranker /readyz does not see the model AVAILABLE and fitting the contract: $ready"
ok "ranker /readyz 200, model AVAILABLE over gRPC, signature fits the contract"

# recommend USER: POST /recommend and check k distinct items, model-scored, not degraded.
recommend() {
  local body
  body="$(curl -fsS --max-time 20 -H 'content-type: application/json' \
    -d "{\"user_id\": \"$1\", \"k\": $K}" "$RANKER/recommend")" || die "POST /recommend failed"
  printf '%s' "$body" | "$PY" -c '
import json, sys
k = int(sys.argv[1])
r = json.load(sys.stdin)
items = r["items"]
problems = []
if r["degraded"]:
    problems.append("degraded (%s)" % r["degraded_reason"])
if len(items) != k:
    problems.append("%d items, expected %d" % (len(items), k))
ids = [i["item_id"] for i in items]
if len(set(ids)) != len(ids):
    problems.append("duplicate items %s" % ids)
scored = [i["score"] for i in items if i["score"] is not None]
if not scored or not all(0.0 < s < 1.0 for s in scored):
    problems.append("model scores missing or outside (0, 1): %s" % scored)
if problems:
    print("; ".join(problems), json.dumps(r)[:600], file=sys.stderr)
    sys.exit(1)
print("user %s: %d items %s, %d model-scored (%.4f..%.4f), %d candidates, degraded false, cold_start %s, took %s ms"
      % (r["user_id"], len(items), ids, len(scored), min(scored), max(scored), r["candidates"],
         str(r["cold_start"]).lower(), r["took_ms"]))
' "$K" || die "bad /recommend answer"
}
answer="$(recommend "$user_id")"
ok "recommend (version 1): $answer"
# The ranker keeps its online state in the redis service: the served items are its impressions.
stored="$(docker exec "$("${COMPOSE[@]}" ps -q redis)" redis-cli ZCARD "recsys:{u:$user_id}:imp")" ||
  die "redis-cli in the redis container failed"
[[ "$stored" == "$K" ]] || die "redis holds $stored impressions for $user_id, expected $K"
ok "online state in redis: $stored impressions of $user_id (recsys:{u:$user_id}:imp)"

# Publish a new version into the mounted folder while the stack runs (export writes a hidden
# staging folder and renames it, so the server never sees half a version).
log "training a second model (seed 1) and publishing it as version 2 into $models/$MODEL_NAME"
quiet "$PY" -m training.cli --data synthetic --data-path "$WORK/data" --model lr --epochs 1 \
  --batch-size 256 --seed 1 --quiet --out "$WORK/run2"
quiet "$PY" -m export.cli export --model-dir "$WORK/run2" --base "$models" --name "$MODEL_NAME" --version 2
chmod -R a+rX "$models/$MODEL_NAME/2"
v2_available() { version_state | grep -qw '2:AVAILABLE'; }
wait_until 120 "version 2 AVAILABLE on the model server" v2_available
state="$(version_state)"
ok "new version picked up live (REST): $state"
grpc_state="$("$PY" -c '
import sys
from recommender_client.client import GrpcClient
with GrpcClient(target=sys.argv[1], timeout=5) as client:
    print(" ".join("%d:%s" % (s.version, s.state) for s in client.model_status(sys.argv[2])))
' "127.0.0.1:$RECSYS_GRPC_PORT" "$MODEL_NAME")" || die "gRPC GetModelStatus failed"
[[ " $grpc_state " == *" 2:AVAILABLE "* ]] || die "gRPC GetModelStatus does not show version 2 AVAILABLE: $grpc_state"
ok "gRPC GetModelStatus on 127.0.0.1:$RECSYS_GRPC_PORT: $grpc_state"

answer="$(recommend "$user_id")"
ok "recommend (version 2): $answer"
answer="$(recommend "e2e-new-user")"
ok "recommend (unknown user, cold start): $answer"

metrics="$(curl -fsS --max-time 5 "$REST/monitoring/prometheus/metrics")" || die "GET /monitoring/prometheus/metrics failed"
samples="$(printf '%s\n' "$metrics" | grep -cv -e '^#' -e '^$' || true)"
((samples > 0)) || die "model server exposes no Prometheus samples"
ok "model server Prometheus metrics: $samples samples at /monitoring/prometheus/metrics, e.g. $(printf '%s\n' "$metrics" | grep -v -e '^#' -e '^$' | head -n1)"
