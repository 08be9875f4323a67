# The ranker's shared online state (RANKER_STATE_BACKEND=redis): Debian's redis-server on the same
# base as the other images, so it builds without pulling a redis image (e2e.sh's debootstrap base works).
#
#   docker build -f docker/redis.Dockerfile -t recsys/redis:latest .
#
# The state is recent impressions and clicks, every key with a TTL: no RDB or AOF (a restart only
# loosens frequency caps until users are served again), memory bounded, least recently used keys
# evicted beyond it. protected-mode is off because compose publishes the port on 127.0.0.1 only.
# A user's impressions set holds up to RANKER_EXPOSURE_MAX_EVENTS_PER_USER (500) members; kept as a
# listpack up to 512 it takes 16 KB at 500 (measured with MEMORY USAGE) instead of 60 KB as a
# skiplist (Redis's default switches past 128), so 256 MB hold ~15,000 users at the cap.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*

# Debian's package creates the redis user; the server needs no file it could write to.
USER redis
WORKDIR /tmp

EXPOSE 6379

HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["redis-cli", "ping"]

ENTRYPOINT ["redis-server", "--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
CMD ["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru", "--zset-max-listpack-entries", "512"]
