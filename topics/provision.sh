#!/bin/sh
# Provision the ladder's topics from the spec, then check them: what operators
# and the Helm pre-install/pre-upgrade Job run.
#
#   LADDER_BROKERS=kafka-0:9092,kafka-1:9092 topics/provision.sh
#
# Environment:
#   TOPICS_FILE   the spec (default topics/topics.yaml, else the one beside this script)
#   LADDER        the ladder binary (default: ladder on PATH)
#   LADDER_*      brokers, Kafka version, client id, security: as for every ladder command
#
# apply creates missing topics, raises partition counts and sets configs; it never
# deletes or shrinks anything. verify then exits 1, listing the differences, when the
# cluster still differs from the spec (a shrink or a replication factor change apply
# refuses to make). Both are idempotent: run it as often as you like.
set -eu

ladder="${LADDER:-ladder}"
file="${TOPICS_FILE:-topics/topics.yaml}"
if [ -z "${TOPICS_FILE:-}" ] && [ ! -f "$file" ]; then
	file="$(dirname "$0")/topics.yaml"
fi
if ! command -v "$ladder" >/dev/null 2>&1; then
	echo "provision.sh: ladder binary \"$ladder\" not found: put it on PATH or set LADDER" >&2
	exit 127
fi

"$ladder" topics apply -f "$file"
"$ladder" topics verify -f "$file"
