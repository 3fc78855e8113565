#!/bin/sh
# Inspect a ladder's tiers with kcat, without joining the forwarder group.
#
#   topics/inspect.sh peek TOPIC [PARTITION [OFFSET]]   the next record of a tier partition: headers, due time
#   topics/inspect.sh count [TOPIC...]                   records retained per partition, from offsets (default: tiers + dead-letter)
#   topics/inspect.sh dlq [N]                            the last N (default 10) dead-lettered records with ladder-error
#
# peek of a tier without OFFSET reads the record the forwarders will forward
# next: its offset (the group's committed offset) comes from `ladder inspect
# --json`; without a working ladder binary it stops with an error (give the
# OFFSET then). Of another topic (dead-letter, lane) it reads the oldest
# retained record, and says so. kcat never joins the forwarders' group: that
# would trigger a rebalance.
#
# Environment (the same as every ladder command):
#   LADDER_BROKERS       bootstrap brokers (default 127.0.0.1:9092)
#   LADDER_TIERS         tier delays (default 1m,15m,1h,6h)
#   LADDER_TOPIC_PREFIX  tier topic prefix (default delay-); the dead-letter topic is PREFIXdlq
#   LADDER_GROUP         the forwarders' group (default ladder), read by ladder inspect
#   LADDER               the ladder binary (default: ladder on PATH, else this checkout's bin/ladder)
#   KCAT                 the kcat binary (default kcat)
#   KCAT_ARGS            extra kcat arguments, such as "-X fetch.wait.max.ms=100" (never a password: ps shows them)
#   LADDER_TLS_ENABLED, LADDER_TLS_CA_FILE, LADDER_TLS_CERT_FILE, LADDER_TLS_KEY_FILE,
#   LADDER_TLS_INSECURE_SKIP_VERIFY, LADDER_SASL_MECHANISM, LADDER_SASL_USERNAME,
#   LADDER_SASL_PASSWORD, LADDER_SASL_PASSWORD_FILE
#                        security, as for every ladder command. They go to kcat in a
#                        private librdkafka config file (mode 0600, removed on exit)
#                        passed with -F: no password is ever on a command line.
#                        LADDER_TLS_SERVER_NAME has no librdkafka equivalent: it is
#                        refused unless KCAT_ARGS sets ssl.endpoint.identification.algorithm.
#                        kcat cannot log in with SASL to the embedded development broker
#                        (librdkafka wants SaslHandshake v0, which it lacks).
set -eu

brokers="${LADDER_BROKERS:-127.0.0.1:9092}"
prefix="${LADDER_TOPIC_PREFIX:-delay-}"
tiers="${LADDER_TIERS:-1m,15m,1h,6h}"
. "$(dirname "$0")/find-ladder.sh"
ladder=$(find_ladder)
kcat="${KCAT:-kcat}"
dlq="${prefix}dlq"

die() { echo "inspect.sh: $*" >&2; exit 2; }

usage() {
	sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# bool NAME VALUE: a LADDER_* boolean as ladder reads it (Go's strconv.ParseBool).
bool() {
	case $2 in
	1 | t | T | true | TRUE | True) echo true ;;
	'' | 0 | f | F | false | FALSE | False) echo false ;;
	*) die "invalid $1=\"$2\": accepted: true or false" ;;
	esac
}

# conf_line KEY VALUE: one property of the kcat config file, written with the
# printf builtin (no process, no command line). kcat reads a line of at most
# 511 characters and trims blanks around the value, so a value it would
# alter is refused (naming the variable, never printing the value).
conf_line() {
	case $2 in
	*"$nl"* | *"$cr"*) die "$3 holds a line break: kcat's config file cannot carry it" ;;
	[[:space:]]* | *[[:space:]]) die "$3 begins or ends with a blank: kcat's config file would drop it" ;;
	esac
	[ ${#1} -le 500 ] && [ $((${#1} + ${#2})) -le 500 ] || die "$3 is too long for kcat's config file (a line holds 511 characters)"
	printf '%s=%s\n' "$1" "$2" >>"$conf"
}

nl='
'
cr=$(printf '\r')
conf=""

# kcat_config writes the private config file from LADDER_TLS_* and
# LADDER_SASL_* when any is set; it is removed when the script exits.
kcat_config() {
	tls=$(bool LADDER_TLS_ENABLED "${LADDER_TLS_ENABLED:-}")
	insecure=$(bool LADDER_TLS_INSECURE_SKIP_VERIFY "${LADDER_TLS_INSECURE_SKIP_VERIFY:-}")
	mech=$(echo "${LADDER_SASL_MECHANISM:-}" | tr '[:lower:]' '[:upper:]' | tr -d '[:space:]')
	if [ "$tls" = false ]; then
		for v in LADDER_TLS_CA_FILE LADDER_TLS_CERT_FILE LADDER_TLS_KEY_FILE LADDER_TLS_SERVER_NAME; do
			eval "val=\${$v:-}"
			[ -z "$val" ] || die "invalid LADDER_TLS_ENABLED=\"${LADDER_TLS_ENABLED:-}\": accepted: true when $v is set (or unset $v)"
		done
		[ "$insecure" = false ] || die "invalid LADDER_TLS_ENABLED=\"${LADDER_TLS_ENABLED:-}\": accepted: true when LADDER_TLS_INSECURE_SKIP_VERIFY is set"
	fi
	case $mech in
	'' | PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512) ;;
	*) die "invalid LADDER_SASL_MECHANISM=\"$LADDER_SASL_MECHANISM\": accepted: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, or empty for no SASL" ;;
	esac
	[ "$tls" = true ] || [ -n "$mech" ] || return 0

	umask 077
	conf=$(mktemp "${TMPDIR:-/tmp}/ladder-kcat.XXXXXX") || die "cannot create a private kcat config file"
	trap 'rm -f "$conf"' EXIT
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 143' TERM

	if [ -n "$mech" ]; then
		if [ "$tls" = true ]; then proto=SASL_SSL; else proto=SASL_PLAINTEXT; fi
	else
		proto=SSL
	fi
	conf_line security.protocol "$proto" security.protocol
	if [ "$tls" = true ]; then
		if [ -n "${LADDER_TLS_CA_FILE:-}" ]; then
			[ -r "$LADDER_TLS_CA_FILE" ] || die "invalid LADDER_TLS_CA_FILE=\"$LADDER_TLS_CA_FILE\": accepted: a readable PEM file of CA certificates"
			conf_line ssl.ca.location "$LADDER_TLS_CA_FILE" LADDER_TLS_CA_FILE
		fi
		if [ -n "${LADDER_TLS_CERT_FILE:-}${LADDER_TLS_KEY_FILE:-}" ]; then
			[ -n "${LADDER_TLS_CERT_FILE:-}" ] || die "invalid LADDER_TLS_CERT_FILE: accepted: the client certificate's PEM file, with LADDER_TLS_KEY_FILE"
			[ -n "${LADDER_TLS_KEY_FILE:-}" ] || die "invalid LADDER_TLS_KEY_FILE: accepted: the client key's PEM file, with LADDER_TLS_CERT_FILE"
			conf_line ssl.certificate.location "$LADDER_TLS_CERT_FILE" LADDER_TLS_CERT_FILE
			conf_line ssl.key.location "$LADDER_TLS_KEY_FILE" LADDER_TLS_KEY_FILE
		fi
		if [ "$insecure" = true ]; then
			echo "inspect.sh: warning: LADDER_TLS_INSECURE_SKIP_VERIFY=true: the brokers' certificates are not verified" >&2
			conf_line enable.ssl.certificate.verification false LADDER_TLS_INSECURE_SKIP_VERIFY
			conf_line ssl.endpoint.identification.algorithm none LADDER_TLS_INSECURE_SKIP_VERIFY
		elif [ -n "${LADDER_TLS_SERVER_NAME:-}" ]; then
			case ${KCAT_ARGS:-} in
			*ssl.endpoint.identification.algorithm*) ;;
			*) die "LADDER_TLS_SERVER_NAME=\"$LADDER_TLS_SERVER_NAME\" has no kcat (librdkafka) equivalent: use a broker address whose name the certificate holds, or, knowing that the name is then not checked, set KCAT_ARGS=\"-X ssl.endpoint.identification.algorithm=none\"" ;;
			esac
		fi
	fi
	if [ -n "$mech" ]; then
		[ -n "${LADDER_SASL_USERNAME:-}" ] || die "invalid LADDER_SASL_USERNAME: accepted: a non-empty user name with LADDER_SASL_MECHANISM=$mech"
		if [ -n "${LADDER_SASL_PASSWORD_FILE:-}" ]; then
			[ -z "${LADDER_SASL_PASSWORD:-}" ] || die "invalid LADDER_SASL_PASSWORD_FILE=\"$LADDER_SASL_PASSWORD_FILE\": accepted: either LADDER_SASL_PASSWORD or LADDER_SASL_PASSWORD_FILE, not both"
			[ -r "$LADDER_SASL_PASSWORD_FILE" ] || die "invalid LADDER_SASL_PASSWORD_FILE=\"$LADDER_SASL_PASSWORD_FILE\": accepted: a readable file holding the password"
			# One trailing newline is ignored, as ladder does.
			pw=$(cat "$LADDER_SASL_PASSWORD_FILE" && echo .) || die "cannot read LADDER_SASL_PASSWORD_FILE=\"$LADDER_SASL_PASSWORD_FILE\""
			pw=${pw%.}
			pw=${pw%"$nl"}
			pwvar=LADDER_SASL_PASSWORD_FILE
		else
			pw=${LADDER_SASL_PASSWORD:-}
			pwvar=LADDER_SASL_PASSWORD
		fi
		[ -n "$pw" ] || die "invalid $pwvar: accepted: a non-empty password with LADDER_SASL_MECHANISM=$mech"
		conf_line sasl.mechanisms "$mech" LADDER_SASL_MECHANISM
		conf_line sasl.username "$LADDER_SASL_USERNAME" LADDER_SASL_USERNAME
		conf_line sasl.password "$pw" "$pwvar"
		pw=""
		[ "$tls" = true ] || [ "$mech" != PLAIN ] ||
			echo "inspect.sh: warning: LADDER_SASL_MECHANISM=PLAIN without LADDER_TLS_ENABLED=true: the password crosses the network in clear text" >&2
	fi
}

# kc runs kcat on the brokers, with the private config file when there is
# one; KCAT_ARGS is split into words on purpose.
kc() {
	if [ -n "$conf" ]; then
		# shellcheck disable=SC2086
		"$kcat" -F "$conf" -b "$brokers" ${KCAT_ARGS:-} "$@"
	else
		# shellcheck disable=SC2086
		"$kcat" -b "$brokers" ${KCAT_ARGS:-} "$@"
	fi
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

# next_offset TOPIC PARTITION: the forwarders' next offset of a tier
# partition, from ladder inspect --json. It stops the script with the reason
# when ladder cannot tell: peek never shows another record in its place.
next_offset() {
	give="give the offset: inspect.sh peek $1 $2 OFFSET"
	[ -n "$ladder" ] || die "cannot find the forwarders' next offset of $1/$2 without ladder ($ladder_missing); or $give"
	command -v "$ladder" >/dev/null 2>&1 || die "cannot find the forwarders' next offset of $1/$2: ladder binary \"$ladder\" not found ($ladder_missing); or $give"
	js=$(LADDER_LOG_LEVEL=error "$ladder" inspect --json 2>&1) ||
		die "cannot find the forwarders' next offset of $1/$2: ladder inspect failed: $(echo "$js" | tail -n 1); $give"
	off=$(echo "$js" | awk -v T="$1" -v P="$2" '
		/"topic":/ { v = $2; gsub(/[",]/, "", v); topic = v }
		/"partition":/ { v = $2; gsub(/[",]/, "", v); part = v }
		/"next_offset":/ { v = $2; gsub(/[",]/, "", v); if (topic == T && part == P) { print v; exit } }')
	[ -n "$off" ] || die "ladder inspect shows no partition $2 of tier $1 (LADDER_TIERS=$tiers, LADDER_TOPIC_PREFIX=$prefix)"
	echo "$off"
}

peek() {
	[ $# -ge 1 ] && [ $# -le 3 ] || usage
	topic=$1 partition=${2:-0} offset=${3:-}
	source="offset given"
	if [ -z "$offset" ] && [ -n "$(delay_ms "$topic")" ]; then
		offset=$(next_offset "$topic" "$partition")
		source="the forwarders' next record, from ladder inspect"
	elif [ -z "$offset" ]; then
		offset=beginning
		source="the oldest retained record: $topic is not a tier of LADDER_TIERS=$tiers"
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

# partitions TOPIC: its partition numbers, from the metadata; none for a
# missing topic. The script stops with kcat's error when the brokers cannot
# be reached (a refused TLS handshake, a failed login).
partitions() {
	md=$(kc -L -t "$1" 2>&1) || die "cannot read the metadata of $1: $(echo "$md" | grep -v '^% Reading configuration' | tail -n 1)"
	echo "$md" | sed -n 's/^ *partition \([0-9]*\),.*/\1/p' | sort -n
}

# offsets_at TOPIC WHICH PARTITION...: "PARTITION OFFSET" per partition, with
# kcat's offset query (-Q): WHICH -2 is the log start, -1 the end. Nothing is
# consumed.
offsets_at() {
	t=$1 which=$2
	shift 2
	args=""
	for p in "$@"; do
		args="$args -t $t:$p:$which"
	done
	# shellcheck disable=SC2086
	kc -Q $args 2>/dev/null | sed -n 's/.* \[\([0-9]*\)\] offset \(-\{0,1\}[0-9]*\).*/\1 \2/p' | sort -n
}

# records N: "1 record", "N records".
records() {
	if [ "$1" -eq 1 ]; then echo "1 record"; else echo "$1 records"; fi
}

count() {
	if [ $# -eq 0 ]; then
		for t in $(echo "$tiers" | tr ',' ' '); do
			set -- "$@" "$prefix$t"
		done
		set -- "$@" "$dlq"
	fi
	for topic in "$@"; do
		ps=$(partitions "$topic") || exit 2
		# shellcheck disable=SC2086
		set -- $ps
		if [ $# -eq 0 ]; then
			echo "$topic: no such topic (or no partitions)"
			continue
		fi
		starts=$(offsets_at "$topic" -2 "$@")
		ends=$(offsets_at "$topic" -1 "$@")
		total=0
		for p in "$@"; do
			first=$(echo "$starts" | awk -v P="$p" '$1 == P { print $2 }')
			end=$(echo "$ends" | awk -v P="$p" '$1 == P { print $2 }')
			[ -n "$first" ] && [ -n "$end" ] || die "$topic/$p: kcat -Q answered no offsets"
			n=$((end - first))
			total=$((total + n))
			echo "$topic/$p  offsets $first..$end  $(records $n)"
		done
		echo "$topic total $(records $total)"
	done
	echo "(counted from offsets: exactly-once forwarders leave a transaction marker, one offset, after each transaction)"
}

dlq_tail() {
	n=${1:-10}
	case $n in *[!0-9]* | '') die "dlq: N must be a number" ;; esac
	ps=$(partitions "$dlq") || exit 2
	[ -n "$ps" ] || die "the dead-letter topic $dlq does not exist (provision it: topics/provision.sh)"
	out=$(kc -C -q -t "$dlq" -o "-$n" -e -f '--- %t/%p offset %o timestamp %T key %k\n%h\nvalue %s\n')
	if [ -z "$out" ]; then
		echo "$dlq: the dead-letter topic is empty: nothing was dead-lettered (or retention removed it)"
		return 0
	fi
	echo "$out" | while IFS= read -r line; do
		case $line in
		---* | value\ *) echo "$line" ;;
		*) echo "$line" | split_headers | sed 's/^/  /' ;;
		esac
	done
}

command -v "$kcat" >/dev/null 2>&1 || die "kcat not found (apt-get install kcat, or set KCAT)"
[ $# -ge 1 ] || usage
case $1 in -h | --help | help) usage ;; esac
kcat_config
cmd=$1
shift
case $cmd in
peek) peek "$@" ;;
count) count "$@" ;;
dlq) dlq_tail "$@" ;;
-h | --help | help) usage ;;
*) die "unknown command $cmd (peek, count, dlq)" ;;
esac
