// Command ladder is a Kafka-native delay ladder: it brings messages back to
// a Kafka topic after a per-message delay, with nothing stored outside Kafka.
//
//	ladder run        the production tier forwarder
//	ladder dev        an embedded broker with the forwarders, for development
//	ladder schedule   schedule messages from the command line
//	ladder drain      release a tier now, through the running forwarders
//	ladder replay     move dead-lettered records back into the ladder
//	ladder topics     plan, apply or verify the topic spec
//	ladder inspect    the state of every tier
//	ladder bench      benchmark scenarios against a broker
//	ladder soak       steady load with forwarder kills, then prove nothing lost
//	ladder plan       capacity planning for a workload
//	ladder config     show or check the configuration
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/rs/zerolog"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name    string
	summary string
	order   int // position in the usage list
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// commands is filled by register, from the init function of each command's file.
var commands []command

func register(c command) {
	commands = append(commands, c)
	slices.SortStableFunc(commands, func(a, b command) int { return a.order - b.order })
}

func init() {
	register(command{name: "version", summary: "print the version", order: 100,
		run: func(_ context.Context, _ []string, _ io.Reader, stdout, _ io.Writer) error {
			fmt.Fprintln(stdout, "ladder", version)
			return nil
		}})
}

func main() {
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Main runs one subcommand and returns the process exit code: 0 on success
// (and on a clean stop by signal), 1 on failure, 2 on bad usage.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdin, stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(usageError)):
			fmt.Fprintf(stderr, "ladder %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "ladder %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "ladder: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// usageError marks errors in how the command was called (flags, arguments,
// configuration values): exit code 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usage(w io.Writer) {
	fmt.Fprintln(w, "ladder: a Kafka-native delay ladder\n\nusage: ladder <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery flag has a LADDER_* environment variable; `ladder <command> -h` lists them.")
}
