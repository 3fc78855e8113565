package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/workahead"
)

// Config is every LADDER_* environment variable. Each subcommand reads the
// ones it uses and lets flags override them. The configuration table of
// cmd/ladder/README.md is generated from these tags (`ladder config --usage`).
type Config struct {
	kafkaconf.Config

	Tiers       string `split_words:"true" default:"1m,15m,1h,6h" desc:"tier delays, comma-separated; units ms, s, m, h, d"`
	TopicPrefix string `split_words:"true" default:"delay-" desc:"prefix of the tier topics and of the dead-letter topic (prefix + dlq)"`
	Group       string `split_words:"true" default:"ladder" desc:"consumer group shared by every forwarder of the ladder"`

	BufferMemory    byteSize      `split_words:"true" default:"32MiB" desc:"memory the forwarder may hold of records, for the whole process: read-ahead, held heads, records in flight (bytes; units KiB, MiB, GiB)"`
	ResumeLead      time.Duration `split_words:"true" default:"500ms" desc:"resume fetching a held partition this long before its head is due"`
	MaxHops         int           `split_words:"true" default:"0" desc:"dead-letter a record after this many hops, a routing loop (0: twice the hops of LADDER_MAX_DELAY on the tiers)"`
	MaxDelay        string        `split_words:"true" default:"365d" desc:"dead-letter a record due further ahead than this (units s, m, h, d)"`
	TargetTimeout   time.Duration `split_words:"true" default:"60s" desc:"dead-letter a record whose target does not exist or refuses writes for this long (unknown_target, not_authorized); later records go on meanwhile"`
	CommitInterval  time.Duration `split_words:"true" default:"500ms" desc:"at-least-once: commit acknowledged offsets this often (what a crash forwards twice)"`
	ShutdownTimeout time.Duration `split_words:"true" default:"15s" desc:"on stop or revoke, wait this long for in-flight records to be acknowledged"`
	StatsInterval   time.Duration `split_words:"true" default:"30s" desc:"log forwarding totals this often; 0 turns it off"`

	ExactlyOnce         bool          `split_words:"true" default:"false" desc:"forward and commit each record in a Kafka transaction; readers of the targets must use read_committed"`
	TransactionalID     string        `split_words:"true" desc:"exactly-once: transactional.id, unique per forwarder (default: group, host and pid); a stable one per instance aborts a crashed predecessor's transaction at once"`
	TransactionInterval time.Duration `split_words:"true" default:"100ms" desc:"exactly-once: the longest a transaction collects records"`
	TransactionTimeout  time.Duration `split_words:"true" default:"10s" desc:"exactly-once: the broker aborts a transaction a crashed forwarder left open after this"`

	HTTPAddr string `split_words:"true" default:":8080" desc:"address of /metrics, /healthz and /readyz; empty turns them off"`

	WorkaheadEnabled      bool          `split_words:"true" default:"false" desc:"release held heads early while a lane's workers are idle (ladder dev: on unless set)"`
	WorkaheadLanes        string        `split_words:"true" desc:"lanes to watch: target=workergroup pairs, comma-separated (ladder dev: each --topics T with group T-workers)"`
	WorkaheadLagThreshold int64         `split_words:"true" default:"100" desc:"a lane is idle while its worker-group lag is below this"`
	WorkaheadRate         float64       `split_words:"true" default:"100" desc:"most early releases per second per lane, per forwarder process"`
	WorkaheadInterval     time.Duration `split_words:"true" default:"1s" desc:"how often lanes' lag is read"`

	LogLevel  string `split_words:"true" default:"info" desc:"log level: trace, debug, info, warn, error"`
	LogFormat string `split_words:"true" default:"auto" desc:"log format: json, console, or auto (console on a terminal)"`

	DevAddr        string   `split_words:"true" default:"127.0.0.1:9092" desc:"ladder dev: address of the embedded broker"`
	DevDataDir     string   `split_words:"true" desc:"ladder dev: data directory of the embedded broker (default $XDG_STATE_HOME/ladder/dev or ~/.local/state/ladder/dev)"`
	DevPartitions  int      `split_words:"true" default:"6" desc:"ladder dev: partitions of the topics it creates"`
	DevTopics      []string `split_words:"true" default:"work" desc:"ladder dev: work topics to create, comma-separated"`
	DevTLSCertFile string   `split_words:"true" desc:"ladder dev: PEM server certificate: the embedded broker speaks TLS only (clients: LADDER_TLS_*)"`
	DevTLSKeyFile  string   `split_words:"true" desc:"ladder dev: PEM private key of that certificate"`
}

var logLevels = []string{"trace", "debug", "info", "warn", "error"}
var logFormats = []string{"json", "console", "auto"}

// loadConfig reads the environment. A value that does not parse is reported
// with its variable name and what it accepts.
func loadConfig() (Config, error) {
	var c Config
	if err := envconfig.Process("ladder", &c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return c, &kafkaconf.FieldError{Var: pe.KeyName, Value: pe.Value, Accept: acceptFor(pe.TypeName)}
		}
		return c, err
	}
	return c, nil
}

func acceptFor(typeName string) string {
	switch typeName {
	case "time.Duration", "Duration":
		return "a duration such as 250ms, 30s, 5m or 1h"
	case "int", "int32", "int64":
		return "a whole number"
	case "bool":
		return "true or false"
	case "byteSize":
		return "a size such as 32MiB or 256MiB (units B, KiB, MiB, GiB)"
	}
	return "a value of type " + typeName
}

// ladder builds the tier ladder from Tiers and TopicPrefix.
func (c Config) ladder() (*tier.Ladder, error) {
	l, err := tier.Parse(c.Tiers, c.TopicPrefix)
	if err != nil {
		if tier.ValidatePrefix(c.TopicPrefix) != nil {
			return nil, &kafkaconf.FieldError{Var: "LADDER_TOPIC_PREFIX", Value: c.TopicPrefix,
				Accept: "a non-empty prefix of characters a-z A-Z 0-9 . _ -"}
		}
		return nil, &kafkaconf.FieldError{Var: "LADDER_TIERS", Value: c.Tiers,
			Accept: "distinct positive delays, comma-separated, such as 1m,15m,1h,6h (units ms, s, m, h, d): " + err.Error()}
	}
	return l, nil
}

// validateForwarder checks what the forwarder uses.
func (c Config) validateForwarder() error {
	switch {
	case c.Group == "":
		return &kafkaconf.FieldError{Var: "LADDER_GROUP", Accept: "a non-empty consumer group id"}
	case c.BufferMemory < 1<<20:
		return &kafkaconf.FieldError{Var: "LADDER_BUFFER_MEMORY", Value: c.BufferMemory.String(), Accept: "a size of 1MiB or more, such as 32MiB or 256MiB (units B, KiB, MiB, GiB)"}
	case c.ResumeLead < 0:
		return &kafkaconf.FieldError{Var: "LADDER_RESUME_LEAD", Value: c.ResumeLead.String(), Accept: "a duration of 0 or more"}
	case c.maxDelay() <= 0:
		return &kafkaconf.FieldError{Var: "LADDER_MAX_DELAY", Value: c.MaxDelay, Accept: "a positive delay such as 30d or 8760h"}
	case c.MaxHops < 0:
		return &kafkaconf.FieldError{Var: "LADDER_MAX_HOPS", Value: fmt.Sprint(c.MaxHops), Accept: "a whole number: 0 (derived from LADDER_MAX_DELAY) or more"}
	case c.TargetTimeout <= 0:
		return &kafkaconf.FieldError{Var: "LADDER_TARGET_TIMEOUT", Value: c.TargetTimeout.String(), Accept: "a positive duration such as 60s"}
	case c.CommitInterval <= 0:
		return &kafkaconf.FieldError{Var: "LADDER_COMMIT_INTERVAL", Value: c.CommitInterval.String(), Accept: "a positive duration such as 500ms"}
	case c.ShutdownTimeout <= 0 || c.ShutdownTimeout > 18*time.Second:
		return &kafkaconf.FieldError{Var: "LADDER_SHUTDOWN_TIMEOUT", Value: c.ShutdownTimeout.String(),
			Accept: "a positive duration up to 18s (a revoked partition must finish within the 20s rebalance timeout)"}
	case c.TransactionInterval <= 0:
		return &kafkaconf.FieldError{Var: "LADDER_TRANSACTION_INTERVAL", Value: c.TransactionInterval.String(), Accept: "a positive duration such as 100ms"}
	case c.TransactionTimeout < time.Second:
		return &kafkaconf.FieldError{Var: "LADDER_TRANSACTION_TIMEOUT", Value: c.TransactionTimeout.String(), Accept: "a duration of 1s or more (at most the broker's transaction.max.timeout.ms)"}
	case c.StatsInterval < 0:
		return &kafkaconf.FieldError{Var: "LADDER_STATS_INTERVAL", Value: c.StatsInterval.String(), Accept: "a duration of 0 (off) or more"}
	}
	return nil
}

// byteSize is a size in bytes read from the environment or a flag as a
// whole number with an optional unit (parseBytes).
type byteSize int64

// Decode implements envconfig.Decoder.
func (b *byteSize) Decode(v string) error { return b.Set(v) }

// Set implements flag.Value.
func (b *byteSize) Set(v string) error {
	n, err := parseBytes(v)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func (b byteSize) String() string {
	switch n := int64(b); {
	case n != 0 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n != 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n != 0 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprint(int64(b))
}

// parseBytes reads a size: a whole number of bytes, or one with a unit B,
// KiB, MiB, GiB (KB, MB, GB are the same powers of 1024, as Kafka's own
// sizes are).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	var n int64
	if _, err := fmt.Sscan(s[:i], &n); err != nil || i == 0 || n < 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	unit := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "KB": 1 << 10, "K": 1 << 10, "MiB": 1 << 20, "MB": 1 << 20, "M": 1 << 20,
		"GiB": 1 << 30, "GB": 1 << 30, "G": 1 << 30}[strings.TrimSpace(s[i:])]
	if unit == 0 {
		return 0, fmt.Errorf("%q has an unknown unit (B, KiB, MiB, GiB)", s)
	}
	return n * unit, nil
}

// maxDelay parses MaxDelay (days allowed); 0 when it does not parse.
func (c Config) maxDelay() time.Duration {
	d, err := tier.ParseDuration(c.MaxDelay)
	if err != nil {
		return 0
	}
	return d
}

func (c Config) validateLog() error {
	if !slices.Contains(logLevels, c.LogLevel) {
		return &kafkaconf.FieldError{Var: "LADDER_LOG_LEVEL", Value: c.LogLevel, Accept: strings.Join(logLevels, ", ")}
	}
	if !slices.Contains(logFormats, c.LogFormat) {
		return &kafkaconf.FieldError{Var: "LADDER_LOG_FORMAT", Value: c.LogFormat, Accept: strings.Join(logFormats, ", ")}
	}
	return nil
}

// logger builds the process logger: JSON, one event per line, or a console
// rendering when asked or when stderr is a terminal. It warns about
// connection settings that weaken security (insecure-skip-verify, PLAIN
// without TLS).
func (c Config) logger(w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(c.LogLevel)
	if err != nil {
		level = zerolog.InfoLevel
	}
	if c.LogFormat == "console" || c.LogFormat == "auto" && isTerminal(w) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	log := zerolog.New(w).Level(level).With().Timestamp().Logger()
	for _, warning := range c.Config.Warnings() {
		log.Warn().Msg(warning)
	}
	return log
}

// isTerminal reports whether w is a terminal (not merely a character
// device: /dev/null is one too).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// terminalWidth is the width in columns of the terminal w, 0 when w is not
// one or its size is unknown.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	cols, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return cols
}

// flags binds command-line flags to Config fields, each defaulting to the
// value read from the environment, and remembers which environment variable
// each flag overrides so errors can name what the user actually set.
type flags struct {
	*flag.FlagSet
	envOf map[string]string // flag name → LADDER_* variable
}

func newFlags(name, usage string, stderr io.Writer) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &flags{FlagSet: fs, envOf: map[string]string{}}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ladder %s\n\nflags (each overrides the LADDER_* variable in brackets):\n", usage)
		fs.PrintDefaults()
	}
	return f
}

// afterParse, when set (by the test of the documentation's commands), is
// called with each command's flag set right after it parsed the command
// line, and what it returns replaces Parse's result: that test stops every
// command there, before it connects to anything.
var afterParse atomic.Pointer[func(f *flags, err error) error]

// Parse parses the command line (see afterParse).
func (f *flags) Parse(args []string) error {
	err := f.FlagSet.Parse(args)
	if hook := afterParse.Load(); hook != nil {
		return (*hook)(f, err)
	}
	return err
}

func (f *flags) env(name, env string) string {
	f.envOf[name] = env
	if env == "" {
		return ""
	}
	return " [" + env + "]"
}

func (f *flags) str(p *string, name, env, usage string) {
	f.StringVar(p, name, *p, usage+f.env(name, env))
}

func (f *flags) bool(p *bool, name, env, usage string) {
	f.BoolVar(p, name, *p, usage+f.env(name, env))
}

func (f *flags) int(p *int, name, env, usage string) {
	f.IntVar(p, name, *p, usage+f.env(name, env))
}

func (f *flags) dur(p *time.Duration, name, env, usage string) {
	f.DurationVar(p, name, *p, usage+f.env(name, env))
}

func (f *flags) list(p *[]string, name, env, usage string) {
	f.Var((*listValue)(p), name, usage+f.env(name, env))
}

// kafka binds the connection flags, SASL and TLS included. The password
// has no flag (a command line shows in ps): LADDER_SASL_PASSWORD or a file.
func (f *flags) kafka(c *kafkaconf.Config) {
	f.list(&c.Brokers, "brokers", "LADDER_BROKERS", "Kafka bootstrap brokers, comma-separated host:port")
	f.str(&c.KafkaVersion, "kafka-version", "LADDER_KAFKA_VERSION", "lowest Kafka version of the cluster")
	f.str(&c.ClientID, "client-id", "LADDER_CLIENT_ID", "Kafka client.id")
	f.str(&c.SASL.Mechanism, "sasl-mechanism", "LADDER_SASL_MECHANISM", "SASL mechanism: "+strings.Join(kafkaconf.Mechanisms, ", ")+"; empty is off")
	f.str(&c.SASL.Username, "sasl-username", "LADDER_SASL_USERNAME", "SASL user name")
	f.str(&c.SASL.PasswordFile, "sasl-password-file", "LADDER_SASL_PASSWORD_FILE", "file holding the SASL password (or set LADDER_SASL_PASSWORD)")
	f.bool(&c.TLS.Enabled, "tls", "LADDER_TLS_ENABLED", "connect to the brokers with TLS")
	f.str(&c.TLS.CAFile, "tls-ca-file", "LADDER_TLS_CA_FILE", "PEM file of the CAs that sign the brokers' certificates")
	f.str(&c.TLS.CertFile, "tls-cert-file", "LADDER_TLS_CERT_FILE", "PEM client certificate for mutual TLS")
	f.str(&c.TLS.KeyFile, "tls-key-file", "LADDER_TLS_KEY_FILE", "PEM private key of the client certificate")
	f.str(&c.TLS.ServerName, "tls-server-name", "LADDER_TLS_SERVER_NAME", "name expected in the brokers' certificates")
	f.bool(&c.TLS.InsecureSkipVerify, "tls-insecure-skip-verify", "LADDER_TLS_INSECURE_SKIP_VERIFY", "do not verify the brokers' certificates (tests only)")
}

// ladder binds the tier flags.
func (f *flags) ladder(c *Config) {
	f.str(&c.Tiers, "tiers", "LADDER_TIERS", "tier delays, comma-separated")
	f.str(&c.TopicPrefix, "topic-prefix", "LADDER_TOPIC_PREFIX", "prefix of the tier and dead-letter topics")
}

// log binds the logging flags.
func (f *flags) log(c *Config) {
	f.str(&c.LogLevel, "log-level", "LADDER_LOG_LEVEL", "log level: "+strings.Join(logLevels, ", "))
	f.str(&c.LogFormat, "log-format", "LADDER_LOG_FORMAT", "log format: "+strings.Join(logFormats, ", "))
}

// forwarder binds the forwarder tuning flags.
func (f *flags) forwarder(c *Config) {
	f.str(&c.Group, "group", "LADDER_GROUP", "consumer group of the forwarders")
	f.Var(&c.BufferMemory, "buffer-memory", "memory the forwarder may hold of records (e.g. 32MiB)"+f.env("buffer-memory", "LADDER_BUFFER_MEMORY"))
	f.dur(&c.TargetTimeout, "target-timeout", "LADDER_TARGET_TIMEOUT", "dead-letter a record whose target is missing or refuses writes this long")
	f.dur(&c.CommitInterval, "commit-interval", "LADDER_COMMIT_INTERVAL", "at-least-once: commit acknowledged offsets this often")
	f.dur(&c.ResumeLead, "resume-lead", "LADDER_RESUME_LEAD", "resume a held partition this long before its head is due")
	f.int(&c.MaxHops, "max-hops", "LADDER_MAX_HOPS", "dead-letter a record after this many hops")
	f.str(&c.MaxDelay, "max-delay", "LADDER_MAX_DELAY", "dead-letter a record due further ahead than this")
	f.dur(&c.ShutdownTimeout, "shutdown-timeout", "LADDER_SHUTDOWN_TIMEOUT", "wait this long for in-flight records on stop")
	f.dur(&c.StatsInterval, "stats-interval", "LADDER_STATS_INTERVAL", "log forwarding totals this often; 0 is off")
	f.str(&c.HTTPAddr, "http-addr", "LADDER_HTTP_ADDR", "address of /metrics, /healthz and /readyz; empty is off")
	f.BoolVar(&c.ExactlyOnce, "exactly-once", c.ExactlyOnce, "forward and commit each record in a Kafka transaction"+f.env("exactly-once", "LADDER_EXACTLY_ONCE"))
	f.str(&c.TransactionalID, "transactional-id", "LADDER_TRANSACTIONAL_ID", "exactly-once: transactional.id of this forwarder")
	f.dur(&c.TransactionInterval, "transaction-interval", "LADDER_TRANSACTION_INTERVAL", "exactly-once: the longest a transaction collects records")
	f.dur(&c.TransactionTimeout, "transaction-timeout", "LADDER_TRANSACTION_TIMEOUT", "exactly-once: transaction timeout")
	f.BoolVar(&c.WorkaheadEnabled, "workahead", c.WorkaheadEnabled, "release held heads early while a lane's workers are idle"+f.env("workahead", "LADDER_WORKAHEAD_ENABLED"))
	f.str(&c.WorkaheadLanes, "workahead-lanes", "LADDER_WORKAHEAD_LANES", "lanes to watch: target=workergroup, comma-separated")
	f.Int64Var(&c.WorkaheadLagThreshold, "workahead-lag-threshold", c.WorkaheadLagThreshold, "a lane is idle below this lag"+f.env("workahead-lag-threshold", "LADDER_WORKAHEAD_LAG_THRESHOLD"))
	f.Float64Var(&c.WorkaheadRate, "workahead-rate", c.WorkaheadRate, "early releases per second per lane"+f.env("workahead-rate", "LADDER_WORKAHEAD_RATE"))
	f.dur(&c.WorkaheadInterval, "workahead-interval", "LADDER_WORKAHEAD_INTERVAL", "how often lanes' lag is read")
}

// workahead builds the work-ahead controller, or nil when it is off.
func (c Config) workahead(reg prometheus.Registerer, log zerolog.Logger) (*workahead.Controller, error) {
	if !c.WorkaheadEnabled {
		return nil, nil
	}
	lanes, err := workahead.ParseLanes(c.WorkaheadLanes)
	if err != nil {
		return nil, &kafkaconf.FieldError{Var: "LADDER_WORKAHEAD_LANES", Value: c.WorkaheadLanes,
			Accept: "target=workergroup pairs, comma-separated, e.g. work-fast=workers-fast,work-slow=workers-slow (" + err.Error() + ")"}
	}
	switch {
	case c.WorkaheadLagThreshold < 1:
		return nil, &kafkaconf.FieldError{Var: "LADDER_WORKAHEAD_LAG_THRESHOLD", Value: fmt.Sprint(c.WorkaheadLagThreshold), Accept: "a whole number of 1 or more"}
	case c.WorkaheadRate <= 0:
		return nil, &kafkaconf.FieldError{Var: "LADDER_WORKAHEAD_RATE", Value: fmt.Sprint(c.WorkaheadRate), Accept: "a positive number of releases per second"}
	case c.WorkaheadInterval <= 0:
		return nil, &kafkaconf.FieldError{Var: "LADDER_WORKAHEAD_INTERVAL", Value: c.WorkaheadInterval.String(), Accept: "a positive duration such as 1s"}
	}
	return workahead.New(workahead.Config{Lanes: lanes, LagThreshold: c.WorkaheadLagThreshold, Rate: c.WorkaheadRate,
		Interval: c.WorkaheadInterval, Registerer: reg, Log: log})
}

// explain rewords a *kafkaconf.FieldError to name the flag when the value
// came from one rather than from the environment.
func (f *flags) explain(err error) error {
	var fe *kafkaconf.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	for name, env := range f.envOf {
		if env == fe.Var && set[name] {
			return &kafkaconf.FieldError{Var: "--" + name, Value: fe.Value, Accept: fe.Accept}
		}
	}
	return err
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(f *flags, name string) bool {
	set := false
	f.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	return set
}

type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }

func (l *listValue) Set(s string) error {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	*l = out
	return nil
}
