# Container targets, included by the Makefile (`include docker/docker.mk`); docker/README.md explains them.
#   make docker-build docker-up          build the images, start model server + ranker on 127.0.0.1
#   make docker-publish RUN_DIR=runs/x   export a training run as the next model version, picked up live
#   make docker-down                     stop the stack
#   make docker-e2e                      the opt-in end-to-end run (root; installs Docker, debootstrap)
DOCKER ?= docker
COMPOSE ?= $(shell $(DOCKER) compose version >/dev/null 2>&1 && echo "$(DOCKER) compose" || echo docker-compose)
DOCKER_PY ?= $(or $(PY),.venv/bin/python)
COMPOSE_PROJECT ?= recsys
BASE_IMAGE ?= python:3.11-slim-bookworm
TFSERVING_IMAGE ?= recsys/tfserving:2.21.0
EMBEDDED_IMAGE ?= recsys/model-server:latest
RANKER_IMAGE ?= recsys/ranker:latest
REDIS_IMAGE ?= recsys/redis:latest
# The one switch between the official server (default) and the embedded one: MODEL_SERVER_IMAGE=$(EMBEDDED_IMAGE)
MODEL_SERVER_IMAGE ?= $(TFSERVING_IMAGE)
DOCKER_MODEL_NAME ?= ctr
RECSYS_MODELS_DIR ?= $(CURDIR)/runs/docker/models
RECSYS_RANKER_DIR ?= $(CURDIR)/runs/docker/ranker

DOCKER_COMPOSE = MODEL_SERVER_IMAGE=$(MODEL_SERVER_IMAGE) RANKER_IMAGE=$(RANKER_IMAGE) REDIS_IMAGE=$(REDIS_IMAGE) \
	RECSYS_MODELS_DIR=$(RECSYS_MODELS_DIR) RECSYS_RANKER_DIR=$(RECSYS_RANKER_DIR) \
	$(COMPOSE) -f docker/compose.yaml -p $(COMPOSE_PROJECT)

.PHONY: docker-config docker-build docker-build-tfserving docker-build-model-server docker-build-ranker \
	docker-build-redis \
	docker-up docker-down docker-ps docker-logs docker-status docker-publish docker-recall docker-e2e

docker-config:
	$(DOCKER_PY) docker/gen_config.py --out docker/config --model-name $(DOCKER_MODEL_NAME)

docker-build: docker-build-tfserving docker-build-model-server docker-build-ranker docker-build-redis

docker-build-tfserving:
	$(DOCKER) build -f docker/tfserving.Dockerfile -t $(TFSERVING_IMAGE) .

docker-build-model-server:
	$(DOCKER) build --build-arg BASE_IMAGE=$(BASE_IMAGE) -f docker/model-server.Dockerfile -t $(EMBEDDED_IMAGE) .

docker-build-ranker:
	$(DOCKER) build --build-arg BASE_IMAGE=$(BASE_IMAGE) -f docker/ranker.Dockerfile -t $(RANKER_IMAGE) .

# Debian's redis-server on the same base (no redis image is pulled).
docker-build-redis:
	$(DOCKER) build --build-arg BASE_IMAGE=$(BASE_IMAGE) -f docker/redis.Dockerfile -t $(REDIS_IMAGE) .

docker-up:
	mkdir -p $(RECSYS_MODELS_DIR)/$(DOCKER_MODEL_NAME) $(RECSYS_RANKER_DIR)
	$(DOCKER_COMPOSE) up -d

docker-down:
	$(DOCKER_COMPOSE) down --remove-orphans

docker-ps:
	$(DOCKER_COMPOSE) ps

docker-logs:
	$(DOCKER_COMPOSE) logs --tail=100

# Versions the model server sees: GET /v1/models/<name> on the REST port.
docker-status:
	curl -fsS http://127.0.0.1:$${RECSYS_REST_PORT:-8501}/v1/models/$(DOCKER_MODEL_NAME)

# Export RUN_DIR (a training run) as the next version into the mounted folder; the server loads it
# within a second and unloads the previous one (latest-version policy).
docker-publish:
	@test -n "$(RUN_DIR)" || { echo "usage: make docker-publish RUN_DIR=<training run folder>"; exit 2; }
	$(DOCKER_PY) -m export.cli publish --model-dir $(RUN_DIR) --base $(RECSYS_MODELS_DIR) --name $(DOCKER_MODEL_NAME)
	chmod -R a+rX $(RECSYS_MODELS_DIR)

# The ranker's recall artefacts from DATA_DIR (training logs) and the run's feature contract.
docker-recall:
	@test -n "$(RUN_DIR)" -a -n "$(DATA_DIR)" || { echo "usage: make docker-recall RUN_DIR=<run> DATA_DIR=<data>"; exit 2; }
	$(DOCKER_PY) -m recommender_client.recall.build --data-dir $(DATA_DIR) --contract $(RUN_DIR) --out $(RECSYS_RANKER_DIR)/artifacts
	cp -n recommender_client/rerank/default_rules.yaml $(RECSYS_RANKER_DIR)/rules.yaml
	chmod -R a+rX $(RECSYS_RANKER_DIR)

docker-e2e:
	bash docker/e2e.sh
