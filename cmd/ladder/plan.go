package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ladder/ladder/pkg/plan"
	"github.com/ladder/ladder/pkg/tier"
)

func init() {
	register(command{name: "plan", summary: "capacity plan of a ladder for a workload; --simulate checks it, --suggest finds tiers", order: 70, run: planCmd})
}

// planReport is the --json output of ladder plan.
type planReport struct {
	// Plan is the plan of --tiers, or of the best suggestion with --suggest.
	Plan *plan.Plan `json:"plan"`
	// Simulation and Comparison are there with --simulate. When the
	// simulation carries fewer messages than Plan (--sim-pending), it is
	// compared with SimulatedPlan, the plan of what it simulates.
	Simulation    *plan.SimResult   `json:"simulation,omitempty"`
	SimulatedPlan *plan.Plan        `json:"simulated_plan,omitempty"`
	Comparison    []plan.CompareRow `json:"comparison,omitempty"`
	// Suggestion is there with --suggest (its best plan is Plan).
	Suggestion *plan.Suggestion `json:"suggestion,omitempty"`
}

// planCmd is `ladder plan`: capacity planning for a ladder and a workload.
func planCmd(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	cfg, err := loadConfig()
	if err != nil {
		return usageError{err}
	}
	var (
		w                          plan.Workload
		delays, delaysFile, object string
		simulate, suggest, asJSON  bool
		simPending                 int64
		simWindow, maxLateness     time.Duration
		seed                       uint64
		maxTiers                   int
	)
	f := newFlags("plan", "plan (--delays LIST | --delays-file CSV) [--pending N] [--size BYTES] [--simulate] [--suggest] [--json]", stderr)
	f.ladder(&cfg)
	f.Int64Var(&w.Pending, "pending", 1_000_000, "messages pending at any time (each is scheduled again when delivered)")
	f.IntVar(&w.ValueBytes, "size", 100, "message (record value) size, bytes")
	f.IntVar(&w.KeyBytes, "key-size", 0, "record key size, bytes; 0 is a null key")
	f.StringVar(&w.Target, "target", "work", "target topic (its name is in the ladder-target header of every record)")
	f.StringVar(&delays, "delays", "", "reschedule delays: DELAY[:WEIGHT] or FROM-TO[:WEIGHT] (uniform), comma-separated, e.g. 5m:0.5,30m:0.3,2h:0.2")
	f.StringVar(&delaysFile, "delays-file", "", "reschedule delays as a CSV histogram: delay,weight or from,to,weight lines")
	f.IntVar(&w.Batch, "batch", 100, "records per produce batch (shares the 61-byte batch header)")
	f.Float64Var(&w.PartitionRate, "partition-rate", 5000, "records/s one partition should carry: sizes the partitions")
	f.IntVar(&w.Replication, "replication", 3, "replication factor of the topics")
	f.IntVar(&w.Partitions, "partitions", 0, "partitions of every tier topic; 0 sizes each from --partition-rate")
	f.DurationVar(&w.Lag, "lag", 0, "forwarder lag: from a record's release to its target receiving it")
	f.BoolVar(&simulate, "simulate", false, "check the plan against a discrete-event simulation of the same workload")
	f.Int64Var(&simPending, "sim-pending", 0, "pending messages in the simulation (default --pending; about 12 bytes of memory each)")
	f.DurationVar(&simWindow, "sim-window", 0, "simulated time measured (default: the mean delay)")
	f.Uint64Var(&seed, "seed", 1, "random seed of the simulation")
	f.BoolVar(&suggest, "suggest", false, "search for the tier set with the fewest hops within --max-lateness and --max-tiers")
	f.DurationVar(&maxLateness, "max-lateness", 0, "with --suggest: the largest smallest tier (the lateness bound); default: the smallest of --tiers")
	f.IntVar(&maxTiers, "max-tiers", 4, "with --suggest: the most tiers (1 to 6)")
	f.StringVar(&object, "objective", plan.ObjectiveHops, "with --suggest: minimise hops or write-amp")
	f.BoolVar(&asJSON, "json", false, "print JSON instead of tables")
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsageShown
	}
	if f.NArg() > 0 {
		return usageError{errors.New("unexpected arguments: " + strings.Join(f.Args(), " "))}
	}
	l, err := cfg.ladder()
	if err != nil {
		return usageError{f.explain(err)}
	}
	if w.Delays, err = readDelays(delays, delaysFile); err != nil {
		return err
	}
	if err := checkPlanFlags(w, simPending, simWindow, maxLateness, maxTiers, object); err != nil {
		return usageError{err}
	}
	if simPending == 0 {
		simPending = w.Pending
	}

	rep := planReport{}
	if suggest {
		if maxLateness == 0 {
			maxLateness = l.Smallest().Delay
		}
		s, err := plan.Suggest(l, w, plan.SuggestConfig{MaxLateness: maxLateness, MaxTiers: maxTiers, Objective: object})
		if err != nil {
			return err
		}
		rep.Suggestion, rep.Plan = s, s.Best
		s.Best = nil // it is rep.Plan
		if l, err = tier.Parse(rep.Plan.Tiers, l.Prefix()); err != nil {
			return err
		}
	} else if rep.Plan, err = plan.Compute(l, w); err != nil {
		return err
	}
	var cmp *plan.Comparison
	if simulate {
		fmt.Fprintf(stderr, "simulating %d pending messages on %s...\n", simPending, l)
		sc := plan.SimConfigFor(l, w, rep.Plan, int(simPending), simWindow, seed)
		against := rep.Plan
		if simPending != w.Pending {
			if rep.SimulatedPlan, err = plan.PlanOf(sc, w); err != nil {
				return err
			}
			against = rep.SimulatedPlan
		}
		if rep.Simulation, err = plan.Simulate(ctx, sc); err != nil {
			return err
		}
		cmp = plan.Compare(against, rep.Simulation)
		rep.Comparison = cmp.Rows
	}

	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if rep.Suggestion != nil {
		if err := plan.WriteSuggestion(stdout, rep.Suggestion); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nbest: %s\n", rep.Plan.Tiers)
	}
	if err := plan.WriteTable(stdout, rep.Plan); err != nil {
		return err
	}
	if cmp != nil {
		fmt.Fprintln(stdout)
		if rep.SimulatedPlan != nil {
			fmt.Fprintf(stdout, "compared with the plan of the %d simulated messages (partitions scaled with the number of messages)\n",
				simPending)
		}
		return plan.WriteComparison(stdout, cmp)
	}
	return nil
}

// readDelays reads the distribution from --delays or --delays-file.
func readDelays(list, file string) (plan.Distribution, error) {
	switch {
	case list != "" && file != "":
		return plan.Distribution{}, usageError{errors.New("give --delays or --delays-file, not both")}
	case list != "":
		d, err := plan.ParseDelays(list)
		if err != nil {
			return d, usageError{fmt.Errorf("--delays: %w", err)}
		}
		return d, nil
	case file != "":
		fh, err := os.Open(file)
		if err != nil {
			return plan.Distribution{}, usageError{fmt.Errorf("--delays-file: %w", err)}
		}
		defer fh.Close()
		d, err := plan.ReadHistogram(fh)
		if err != nil {
			return d, usageError{fmt.Errorf("--delays-file %s: %w", file, err)}
		}
		return d, nil
	}
	return plan.Distribution{}, usageError{errors.New("give the reschedule delays: --delays (e.g. 5m:0.5,30m:0.3,2h:0.2) or --delays-file")}
}

// checkPlanFlags refuses values the planner cannot use, naming the flag.
func checkPlanFlags(w plan.Workload, simPending int64, simWindow, maxLateness time.Duration, maxTiers int, objective string) error {
	bad := func(flag string, value any, accept string) error {
		return fmt.Errorf("invalid --%s=%v: accepted: %s", flag, value, accept)
	}
	switch {
	case w.Pending < 1:
		return bad("pending", w.Pending, "1 or more messages")
	case w.ValueBytes < 1:
		return bad("size", w.ValueBytes, "1 or more bytes")
	case w.KeyBytes < 0:
		return bad("key-size", w.KeyBytes, "0 (a null key) or more bytes")
	case tier.ValidateTopic(w.Target) != nil:
		return bad("target", w.Target, "a topic name")
	case w.Batch < 1 || w.Batch > 1_000_000:
		return bad("batch", w.Batch, "1 to 1000000 records")
	case !(w.PartitionRate > 0) || w.PartitionRate > 1e12:
		return bad("partition-rate", w.PartitionRate, "a positive number of records per second")
	case w.Replication < 1:
		return bad("replication", w.Replication, "1 or more")
	case w.Partitions < 0:
		return bad("partitions", w.Partitions, "0 (sized from --partition-rate) or more")
	case w.Lag < 0 || w.Lag%time.Millisecond != 0:
		return bad("lag", w.Lag, "0 or more whole milliseconds")
	case simPending < 0 || simPending > 1<<31-1:
		return bad("sim-pending", simPending, "1 to 2147483647 messages")
	case simWindow < 0 || simWindow%time.Millisecond != 0:
		return bad("sim-window", simWindow, "0 (the mean delay) or a whole number of milliseconds")
	case maxLateness < 0:
		return bad("max-lateness", maxLateness, "a positive duration")
	case maxTiers < 1 || maxTiers > 6:
		return bad("max-tiers", maxTiers, "1 to 6")
	case objective != plan.ObjectiveHops && objective != plan.ObjectiveWriteAmp:
		return bad("objective", objective, plan.ObjectiveHops+" or "+plan.ObjectiveWriteAmp)
	}
	return nil
}
