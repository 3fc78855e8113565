#!/bin/sh
# Provision the ladder's topics from the spec, then check them: what operators
# and the Helm pre-install/pre-upgrade Job run.
#
#   LADDER_BROKERS=kafka-0:9092,kafka-1:9092 topics/provision.sh
#   LADDER_BROKERS=127.0.0.1:9092 topics/provision.sh --replication-factor 1   # ladder dev: one broker
#
# Arguments go to both ladder topics apply and verify: --replication-factor N
# gives every topic N replicas (and min.insync.replicas at most N) in place of
# the spec's, for a cluster with fewer brokers, such as ladder dev's one.
#
# Environment:
#   TOPICS_FILE   the spec (default topics/topics.yaml, else the one beside this script)
#   LADDER        the ladder binary (default: ladder on PATH, else this checkout's bin/ladder)
#   LADDER_*      brokers, Kafka version, client id, security: as for every ladder command
#
# apply creates missing topics, raises partition counts and sets configs; it never
# deletes or shrinks anything, and changes nothing at all when the cluster cannot take
# every change (such as replication factor 3 on one broker). verify then exits 1, listing
# the differences, when the cluster still differs from the spec (a shrink or a replication
# factor change apply refuses to make). Both are idempotent: run it as often as you like.
set -eu

. "$(dirname "$0")/find-ladder.sh"
ladder=$(find_ladder)
file="${TOPICS_FILE:-topics/topics.yaml}"
if [ -z "${TOPICS_FILE:-}" ] && [ ! -f "$file" ]; then
	file="$(dirname "$0")/topics.yaml"
fi
if [ -z "$ladder" ]; then
	echo "provision.sh: $ladder_missing" >&2
	exit 127
fi
if ! command -v "$ladder" >/dev/null 2>&1; then
	echo "provision.sh: ladder binary \"$ladder\" not found: $ladder_missing" >&2
	exit 127
fi

"$ladder" topics apply -f "$file" "$@"
"$ladder" topics verify -f "$file" "$@"
