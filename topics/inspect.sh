#!/bin/sh
# Inspect a ladder's tiers with kcat, without joining the forwarder group.
#
#   topics/inspect.sh peek TOPIC [PARTITION [OFFSET]]   the next record of a tier partition: headers, due time
#   topics/inspect.sh count [TOPIC...]                   records retained per partition (default: tiers + dead-letter)
#   topics/inspect.sh dlq [N]                            the last N (default 10) dead-lettered records with ladder-error
#
# peek without OFFSET reads the record the forwarders will forward next: its
# offset (the group's committed offset) comes from `ladder inspect --json` when
# the ladder binary is at hand, else peek shows the oldest retained record.
# kcat never joins the forwarders' group: that would trigger a rebalance.
#
# Environment (the same as every ladder command):
#   LADDER_BROKERS       bootstrap brokers (default 127.0.0.1:9092)
#   LADDER_TIERS         tier delays (default 1m,15m,1h,6h)
#   LADDER_TOPIC_PREFIX  tier topic prefix (default delay-); the dead-letter topic is PREFIXdlq
#   LADDER_GROUP         the forwarders' group (default ladder), read by ladder inspect
#   LADDER               the ladder binary (default: ladder on PATH)
#   KCAT                 the kcat binary (default kcat)
#   KCAT_ARGS            extra kcat arguments, such as "-X security.protocol=SSL -X ssl.ca.location=/etc/kafka/ca.pem"
set -eu

brokers="${LADDER_BROKERS:-127.0.0.1:9092}"
prefix="${LADDER_TOPIC_PREFIX:-delay-}"
tiers="${LADDER_TIERS:-1m,15m,1h,6h}"
ladder="${LADDER:-ladder}"
kcat="${KCAT:-kcat}"
dlq="${prefix}dlq"

die() { echo "inspect.sh: $*" >&2; exit 2; }

usage() {
	sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# kc runs kcat on the brokers; KCAT_ARGS is split into words on purpose.
kc() {
	# shellcheck disable=SC2086
	"$kcat" -b "$brokers" ${KCAT_ARGS:-} "$@"
}

now_ms() {
	ms=$(date +%s%3N 2>/dev/null || true)
	case $ms in
	*N | '') echo $(($(date +%s) * 1000)) ;;
	*) echo "$ms" ;;
	esac
}

# human_time MS: unix milliseconds as a UTC date.
human_time() {
	s=$(($1 / 1000))
	frac=$(printf '%03d' $(($1 % 1000)))
	d=$(date -u -d "@$s" '+%Y-%m-%d %H:%M:%S' 2>/dev/null || date -u -r "$s" '+%Y-%m-%d %H:%M:%S')
	echo "$d.$frac UTC"
}

# human_dur MS: a duration such as 1h2m3.004s.
human_dur() {
	ms=$1 out=""
	[ "$ms" -ge 3600000 ] && out="$((ms / 3600000))h" && ms=$((ms % 3600000))
	[ "$ms" -ge 60000 ] && out="$out$((ms / 60000))m" && ms=$((ms % 60000))
	echo "$out$((ms / 1000)).$(printf '%03d' $((ms % 1000)))s"
}

# delay_ms TOPIC: the tier delay of a tier topic, or nothing.
delay_ms() {
	label=${1#"$prefix"}
	[ "$label" != "$1" ] || return 0
	for t in $(echo "$tiers" | tr ',' ' '); do
		[ "$t" = "$label" ] || continue
		case $t in
		*ms) echo "${t%ms}" ;;
		*s) echo $((${t%s} * 1000)) ;;
		*m) echo $((${t%m} * 60000)) ;;
		*h) echo $((${t%h} * 3600000)) ;;
		*d) echo $((${t%d} * 86400000)) ;;
		esac
	done
}

# split_headers: kcat's %h ("k1=v1,k2=v2") one header a line. A comma starts
# a new header only when a name and "=" follow it, so values such as
# ladder-error keep their commas.
split_headers() {
	awk '{ s = $0
		while (match(s, /,[^ ,=]+=/)) { print substr(s, 1, RSTART - 1); s = substr(s, RSTART + 1) }
		if (s != "") print s }'
}

# next_offset TOPIC PARTITION: the forwarders' next offset, from ladder inspect --json.
next_offset() {
	command -v "$ladder" >/dev/null 2>&1 || return 0
	LADDER_LOG_LEVEL=error "$ladder" inspect --json 2>/dev/null | awk -v T="$1" -v P="$2" '
		/"topic":/ { v = $2; gsub(/[",]/, "", v); topic = v }
		/"partition":/ { v = $2; gsub(/[",]/, "", v); part = v }
		/"next_offset":/ { v = $2; gsub(/[",]/, "", v); if (topic == T && part == P) { print v; exit } }' || true
}

peek() {
	[ $# -ge 1 ] && [ $# -le 3 ] || usage
	topic=$1 partition=${2:-0} offset=${3:-}
	source="offset given"
	if [ -z "$offset" ]; then
		offset=$(next_offset "$topic" "$partition")
		source="the forwarders' next record, from ladder inspect"
		if [ -z "$offset" ]; then
			offset=beginning
			source="the oldest retained record: ladder inspect unavailable or not a tier"
		fi
	fi
	out=$(kc -C -q -t "$topic" -p "$partition" -o "$offset" -c 1 -e \
		-f 'offset %o\ntimestamp %T\nkey %k\nheaders %h\nvalue %s\n')
	if [ -z "$out" ]; then
		if [ "$offset" = beginning ]; then
			echo "$topic/$partition: the partition holds no record"
		else
			echo "$topic/$partition: no record at offset $offset ($source): nothing pending"
		fi
		return 0
	fi
	now=$(now_ms)
	echo "$out" | {
		read -r _ off
		read -r _ ts
		read -r _ key || true
		IFS= read -r hdrs || true
		hdrs=${hdrs#headers }
		value=$(cat)
		value=${value#value }
		echo "$topic/$partition offset $off ($source)"
		echo "  timestamp  $ts  $(human_time "$ts")"
		echo "  key        $key"
		echo "$hdrs" | split_headers | while IFS= read -r h; do
			name=${h%%=*} val=${h#*=}
			case $name in
			ladder-due | ladder-scheduled)
				echo "  header     $name=$val  $(human_time "$val")" ;;
			*) echo "  header     $name=$val" ;;
			esac
		done
		due=$(echo "$hdrs" | split_headers | sed -n 's/^ladder-due=\([0-9]*\)$/\1/p' | head -n 1)
		delay=$(delay_ms "$topic")
		if [ -n "$delay" ]; then
			release=$((ts + delay))
			[ -n "$due" ] && [ "$due" -lt "$release" ] && release=$due
			if [ "$release" -gt "$now" ]; then
				state="due in $(human_dur $((release - now)))"
			else
				state="overdue by $(human_dur $((now - release)))"
			fi
			echo "  release    $release  $(human_time "$release"): $state (min(timestamp + tier delay, ladder-due))"
		elif [ -n "$due" ]; then
			if [ "$due" -gt "$now" ]; then
				echo "  due        in $(human_dur $((due - now)))"
			else
				echo "  due        $(human_dur $((now - due))) ago"
			fi
		fi
		echo "  value      $value"
	}
}

# end_offsets TOPIC: "PARTITION END" per partition, from kcat's end-of-partition messages.
end_offsets() {
	kc -C -t "$1" -o end -e -f '' 2>&1 |
		sed -n 's/.*Reached end of topic .* \[\([0-9]*\)\] at offset \([0-9]*\).*/\1 \2/p' | sort -n
}

count() {
	if [ $# -eq 0 ]; then
		for t in $(echo "$tiers" | tr ',' ' '); do
			set -- "$@" "$prefix$t"
		done
		set -- "$@" "$dlq"
	fi
	for topic in "$@"; do
		total=0
		ends=$(end_offsets "$topic")
		if [ -z "$ends" ]; then
			echo "$topic: no such topic (or no partitions)"
			continue
		fi
		while read -r p end; do
			first=$(kc -C -q -t "$topic" -p "$p" -o beginning -c 1 -e -f '%o\n')
			[ -n "$first" ] || first=$end
			n=$((end - first))
			total=$((total + n))
			echo "$topic/$p  offsets $first..$end  $n records"
		done <<EOF
$ends
EOF
		echo "$topic total $total records"
	done
}

dlq_tail() {
	n=${1:-10}
	case $n in *[!0-9]* | '') die "dlq: N must be a number" ;; esac
	kc -C -q -t "$dlq" -o "-$n" -e -f '--- %t/%p offset %o timestamp %T key %k\n%h\nvalue %s\n' |
		while IFS= read -r line; do
			case $line in
			---* | value\ *) echo "$line" ;;
			*) echo "$line" | split_headers | sed 's/^/  /' ;;
			esac
		done
}

command -v "$kcat" >/dev/null 2>&1 || die "kcat not found (apt-get install kcat, or set KCAT)"
[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
peek) peek "$@" ;;
count) count "$@" ;;
dlq) dlq_tail "$@" ;;
-h | --help | help) usage ;;
*) die "unknown command $cmd (peek, count, dlq)" ;;
esac
