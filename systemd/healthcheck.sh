#!/bin/sh
# hybrid-engine healthcheck: prints PASS or FAIL: <reasons>, exits 0/1, always within 30 s.
#
# Checks (see docs/operations.md, "Healthcheck"): the systemd unit is active (where
# systemd runs), the engine's last heartbeat is younger than 3 heartbeat intervals
# and its run has not ended, the database PRAGMAs hold (WAL), and the dashboard's
# /healthz answers 200.
#
# Settings (environment, all optional):
#   HYBRID_ENGINE          command to run the engine CLI   (default: hybrid-engine)
#   HYBRID_ENGINE_CONFIG   TOML config file, for engine.db_path
#   HYBRID_ENGINE_DB       database file                   (default: engine.db_path)
#   HYBRID_DASHBOARD_URL   dashboard base URL, '' to skip  (default: http://127.0.0.1:8080)
#   HYBRID_ENGINE_UNIT     systemd unit, '' to skip        (default: hybrid-engine.service)
# Extra arguments are passed to `hybrid-engine health`.
set -u

BUDGET_S=30   # the contract: a verdict within 30 s, whatever hangs

engine=${HYBRID_ENGINE:-hybrid-engine}
set -- --url "${HYBRID_DASHBOARD_URL-http://127.0.0.1:8080}" \
       --unit "${HYBRID_ENGINE_UNIT-hybrid-engine.service}" "$@"
if [ -n "${HYBRID_ENGINE_DB:-}" ]; then
    set -- --db "$HYBRID_ENGINE_DB" "$@"
fi
if [ -n "${HYBRID_ENGINE_CONFIG:-}" ]; then
    set -- --config "$HYBRID_ENGINE_CONFIG" "$@"
fi

# $engine is split on purpose: it may be "python3 -m engine".
# shellcheck disable=SC2086
timeout --kill-after=2 "$((BUDGET_S - 3))" $engine health "$@"
status=$?
case $status in
    0|1) exit "$status" ;;
    124|137) echo "FAIL: healthcheck timed out after $((BUDGET_S - 3)) s"; exit 1 ;;
    *) echo "FAIL: healthcheck could not run ($engine exited $status)"; exit 1 ;;
esac
