#!/usr/bin/env bash
# The CI stack: docker/compose.yaml with docker/compose.ci.yaml on top (README "Deployment").
#   docker/test-deploy.sh [test]  build the images, start the stack from empty volumes, wait for
#                                 it to be healthy, run tests/deploy/ against it, and always
#                                 take it down again, volumes included (`make test-deploy`)
#   docker/test-deploy.sh up      build and start it (or apply a changed VRP_DASHBOARD_TOKEN)
#                                 and leave it running, volumes kept
#   docker/test-deploy.sh down    stop it and remove its containers and volumes
# After `up`, `docker-compose` in a shell that ran the two exports this prints acts on it.
#
# Needs a running Docker engine and docker-compose (`.ci/run` installs and starts them), and
# mmdebstrap the first time: the base image `vrp-base:bookworm` (Debian bookworm minbase with
# Python 3.11 and PostgreSQL 15) is made from Debian's packages, since no image registry may be
# reachable. Its tar is kept in DEPLOY_CACHE_DIR (default /var/cache/vrp-deploy) and the
# imported image in the engine, so later runs skip that step; a clean machine makes both. The
# wheelhouse must be there (`make wheelhouse`): no package index is reachable from a build.
set -euo pipefail
cd "$(dirname "$0")/.."

ACTION=${1:-test}
CACHE_DIR=${DEPLOY_CACHE_DIR:-/var/cache/vrp-deploy}
BASE_IMAGE=vrp-base:bookworm
BASE_PACKAGES=python3,python3-venv,postgresql-15
PYTHON=${PYTHON:-.venv/bin/python}
LOG_DIR=build/deploy
# Every docker-compose below, and those tests/deploy/ runs, use this project and the file that
# `tests.deploy.stack render` makes of compose.yaml + compose.ci.yaml.
export COMPOSE_PROJECT_NAME=vrp-deploy COMPOSE_FILE=$PWD/$LOG_DIR/compose.yaml

step() { printf '== %s: %s (%ss)\n' "$ACTION" "$1" "$SECONDS"; }

case "$ACTION" in
test | up | down) ;;
*)
    echo "usage: docker/test-deploy.sh [test|up|down]" >&2
    exit 2
    ;;
esac

if ! docker info >/dev/null 2>&1; then
    echo "test-deploy: no Docker engine answers; start one: dockerd --bridge=none --iptables=false &" >&2
    exit 1
fi

if [ "$ACTION" = down ]; then
    if [ -f "$COMPOSE_FILE" ]; then
        docker-compose down --volumes --remove-orphans --timeout 20
        rm -f "$COMPOSE_FILE"
    fi
    exit 0
fi

step "base image $BASE_IMAGE"
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    if [ ! -s "$CACHE_DIR/base-bookworm.tar" ]; then
        # The mirror this host's apt uses (deb822 sources first, then sources.list).
        mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | grep -v security | head -n 1 || true)
        mirror=${mirror:-$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' \
            /etc/apt/sources.list 2>/dev/null || true)}
        mirror=${mirror:-http://deb.debian.org/debian}
        mkdir -p "$CACHE_DIR"
        rm -rf "$CACHE_DIR/base-bookworm.partial.tar"
        mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" bookworm \
            "$CACHE_DIR/base-bookworm.partial.tar" "$mirror"
        mv "$CACHE_DIR/base-bookworm.partial.tar" "$CACHE_DIR/base-bookworm.tar"
    fi
    docker import "$CACHE_DIR/base-bookworm.tar" "$BASE_IMAGE" >/dev/null
fi

if ! ls docker/wheelhouse/*.whl >/dev/null 2>&1; then
    echo "test-deploy: docker/wheelhouse is empty; run: make wheelhouse" >&2
    exit 1
fi
step "image vrp:ci (docker/Dockerfile)"
docker build --quiet --force-rm --network none --build-arg BASE="$BASE_IMAGE" \
    -f docker/Dockerfile -t vrp:ci . >/dev/null
step "image vrp-postgres:ci (docker/postgres.Dockerfile)"
docker build --quiet --force-rm --network none --build-arg BASE="$BASE_IMAGE" \
    -f docker/postgres.Dockerfile -t vrp-postgres:ci docker >/dev/null

if [ -z "${VRP_DASHBOARD_TOKEN:-}" ]; then
    VRP_DASHBOARD_TOKEN=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')
fi
export VRP_DASHBOARD_TOKEN
mkdir -p "$LOG_DIR"

if [ "$ACTION" = up ]; then
    COMPOSE_FILE='' "$PYTHON" -m tests.deploy.stack render "$COMPOSE_FILE"
    step "up"
    docker-compose up -d --no-build
    "$PYTHON" -m tests.deploy.stack wait-healthy --timeout 180
    echo "export COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME COMPOSE_FILE=$COMPOSE_FILE"
    echo "api http://127.0.0.1:15000, dashboard http://127.0.0.1:18050 (token: docker-compose exec -T dashboard printenv VRP_DASHBOARD_TOKEN)"
    exit 0
fi

cleanup() {
    status=$?
    step "logs in $LOG_DIR/compose.log; down"
    docker-compose logs --no-color --timestamps >"$LOG_DIR/compose.log" 2>&1 || true
    if [ "$status" -ne 0 ]; then
        echo "test-deploy failed (status $status); the last lines of each service's logs:" >&2
        for service in postgres migrate api scheduler dashboard; do
            docker-compose logs --no-color --tail 8 "$service" >&2 || true
        done
        docker-compose ps >&2 || true
    fi
    docker-compose down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true
    rm -f "$COMPOSE_FILE"
    exit "$status"
}
# A stack left by `up` or by a killed run goes first: the test starts from empty volumes.
if [ -f "$COMPOSE_FILE" ]; then
    docker-compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
fi
# Host networking: the stack's ports must be free (someone else's server would answer instead).
for port in 15432 15000 18050; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "test-deploy: 127.0.0.1:$port is in use; docker/compose.ci.yaml needs it" >&2
        exit 1
    fi
done
COMPOSE_FILE='' "$PYTHON" -m tests.deploy.stack render "$COMPOSE_FILE"
trap cleanup EXIT
trap 'exit 130' INT TERM

step "up"
docker-compose up -d --no-build

step "waiting for api and dashboard to be healthy"
"$PYTHON" -m tests.deploy.stack wait-healthy --timeout 180

step "tests/deploy"
DEPLOY_STACK=1 "$PYTHON" -m pytest tests/deploy -p no:cacheprovider -o addopts="-ra" --durations=0
step "passed"
