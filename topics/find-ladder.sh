# Sourced by provision.sh and inspect.sh. find_ladder prints the ladder
# binary to run: $LADDER when set, else ladder on PATH, else the checkout's
# bin/ladder (make build) beside this directory; nothing when there is none.
find_ladder() {
	if [ -n "${LADDER:-}" ]; then
		echo "$LADDER"
	elif command -v ladder >/dev/null 2>&1; then
		echo ladder
	elif [ -x "$(dirname "$0")/../bin/ladder" ]; then
		echo "$(dirname "$0")/../bin/ladder"
	fi
}

# ladder_missing says how to get a ladder binary.
ladder_missing="no ladder binary: build one (make build: bin/ladder), install one (make install), or set LADDER"
