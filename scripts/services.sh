#!/usr/bin/env bash
# PostgreSQL + S3 (moto) + MLflow server on 127.0.0.1: eval "$(scripts/services.sh up)"; scripts/services.sh down
exec python "$(dirname "$0")/services.py" "$@"
