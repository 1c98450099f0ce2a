#!/bin/sh
# The Temporal namespace codexflow uses, created when missing (run by the temporal-namespace
# service of docker-compose.yml). Needs TEMPORAL_ADDRESS, NAMESPACE and RETENTION.
set -eu

# The frontend port opens before the cluster serves requests: wait for a healthy answer.
tries=0
until temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        echo "Temporal at $TEMPORAL_ADDRESS is not healthy after 2 minutes" >&2
        exit 1
    fi
    sleep 2
done

if temporal operator namespace describe --address "$TEMPORAL_ADDRESS" --namespace "$NAMESPACE" >/dev/null 2>&1; then
    echo "namespace $NAMESPACE exists"
else
    temporal operator namespace create --address "$TEMPORAL_ADDRESS" --namespace "$NAMESPACE" --retention "$RETENTION"
fi
