package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/topics"
)

func init() {
	register(command{name: "topics", summary: "plan, apply or verify the topics of topics/topics.yaml", order: 40, run: topicsCmd})
}

var topicVerbs = []string{"plan", "apply", "verify"}

// errDrift ends `ladder topics verify` when the cluster differs from the spec: exit 1.
var errDrift = errors.New("the cluster differs from the spec")

// topicsCmd is `ladder topics plan|apply|verify -f FILE [--replication-factor N]`.
//
// --replication-factor is the way to provision a cluster with fewer brokers
// than the spec's replication factor, such as `ladder dev` (one broker): the
// same spec, so the same tiers, lanes and retention, with every topic's
// replication factor set, as kafka-topics.sh --replication-factor and Kafka's
// own single-broker settings (offsets.topic.replication.factor=1) do. A
// second spec file would drift from the one that ships.
func topicsCmd(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	cfg, err := loadConfig()
	if err != nil {
		return usageError{err}
	}
	var (
		file        string
		timeout     time.Duration
		otherLadder bool
		rf          int
	)
	f := newFlags("topics", "topics plan|apply|verify -f topics/topics.yaml [--replication-factor 1] [flags]", stderr)
	f.kafka(&cfg.Config)
	f.log(&cfg)
	f.StringVar(&file, "f", "", "topic spec file, such as topics/topics.yaml (required)")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	f.IntVar(&rf, "replication-factor", 0, "replication factor of every topic, in place of the spec's, with min.insync.replicas lowered to it "+
		"where higher: 1 for a one-broker development cluster such as ladder dev (0: as the spec says)")
	f.BoolVar(&otherLadder, "allow-other-ladder", false,
		"go on when LADDER_TIERS or LADDER_TOPIC_PREFIX name other tiers than the spec (a spec meant for another ladder); a warning then")
	verb := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsageShown
	}
	if verb == "" && f.NArg() > 0 {
		verb = f.Arg(0)
	} else if f.NArg() > 0 {
		return usageError{errors.New("unexpected arguments: " + strings.Join(f.Args(), " "))}
	}
	switch {
	case verb == "":
		return usageError{errors.New("say what to do: ladder topics plan|apply|verify -f FILE")}
	case !slices.Contains(topicVerbs, verb):
		return usageError{fmt.Errorf("unknown action %q: want plan, apply or verify", verb)}
	case file == "":
		return usageError{errors.New("-f FILE is required (the topic spec, such as topics/topics.yaml)")}
	case rf < 0 || rf > 32767:
		return usageError{&kafkaconf.FieldError{Var: "--replication-factor", Value: fmt.Sprint(rf), Accept: "a whole number of 1 or more, or 0 for the spec's"}}
	}
	for _, check := range []func() error{cfg.validateLog, cfg.Config.Validate} {
		if err := check(); err != nil {
			return usageError{f.explain(err)}
		}
	}
	spec, err := topics.Load(file)
	if err != nil {
		return usageError{err}
	}
	if rf > 0 {
		fmt.Fprintf(stdout, "note: --replication-factor %d: %s\n", rf, spec.SetReplicationFactor(int16(rf)))
	}
	log := cfg.logger(stderr)
	if err := envconfig.CheckDisallowed("ladder", &cfg); err != nil {
		log.Warn().Err(err).Msg("unknown LADDER_* variable: misspelled?")
	}
	if err := checkLadderMatch(spec, file, otherLadder, stderr); err != nil {
		return usageError{err}
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	admin, err := topics.NewAdmin(cfg.Config, log)
	if err != nil {
		return err
	}
	defer admin.Close()
	p, err := admin.Plan(ctx, spec)
	if err != nil {
		return err
	}
	switch verb {
	case "plan":
		p.Write(stdout)
		return nil
	case "verify":
		drift := p.Drift()
		if len(drift) == 0 {
			fmt.Fprintf(stdout, "ok: %d topics match %s\n", len(p.InSync), file)
			return nil
		}
		fmt.Fprintf(stdout, "drift: %d differences between the cluster and %s\n", len(drift), file)
		for _, d := range drift {
			fmt.Fprintln(stdout, "  "+d)
		}
		return fmt.Errorf("%w (%d differences; `ladder topics plan -f %s` shows what apply would do)", errDrift, len(drift), file)
	}
	if p.Changes() == 0 {
		p.Write(stdout)
		return nil
	}
	// The whole plan, as `ladder topics plan` prints it: what will not be
	// resolved, and what the cluster cannot take (then nothing is changed).
	fmt.Fprintln(stdout, "applying:")
	p.Write(stdout)
	after, err := admin.Apply(ctx, spec, p)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applied %d changes\n", p.Changes())
	after.Write(stdout)
	return nil
}

// checkLadderMatch refuses a spec whose tiers are not the ones LADDER_TIERS
// and LADDER_TOPIC_PREFIX name, when either is set: the forwarders
// configured with them would read other topics than the ones provisioned
// (the chart refuses to render in that case too). allow turns the refusal
// into a warning, for a spec meant for another ladder. Delays are compared
// as topic names, so 60s and 1m agree.
func checkLadderMatch(spec *topics.Spec, file string, allow bool, stderr io.Writer) error {
	l := spec.TierLadder()
	prefix, okP := os.LookupEnv("LADDER_TOPIC_PREFIX")
	tiers, okT := os.LookupEnv("LADDER_TIERS")
	if !okP {
		prefix = l.Prefix()
	}
	if !okT {
		tiers = l.String()
	}
	env, err := tier.Parse(tiers, prefix)
	if err != nil {
		return fmt.Errorf("LADDER_TIERS=%q LADDER_TOPIC_PREFIX=%q: %w", tiers, prefix, err)
	}
	if strings.Join(env.Topics(), ",") == strings.Join(l.Topics(), ",") {
		return nil
	}
	msg := fmt.Sprintf("LADDER_TIERS=%q LADDER_TOPIC_PREFIX=%q name the tiers %s; the spec %s names %s: "+
		"forwarders configured with them would not read the topics it provisions",
		tiers, prefix, strings.Join(env.Topics(), ", "), file, strings.Join(l.Topics(), ", "))
	if allow {
		fmt.Fprintf(stderr, "warning: %s (going on: --allow-other-ladder)\n", msg)
		return nil
	}
	return fmt.Errorf("%s; make them agree, or pass --allow-other-ladder if the spec is meant for another ladder", msg)
}
