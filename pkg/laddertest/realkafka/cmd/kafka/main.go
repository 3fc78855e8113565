// Command kafka runs Apache Kafka (the release pkg/laddertest/realkafka
// pins) on loopback for a person to try ladder against by hand: `make kafka`.
// It prints the bootstrap address (127.0.0.1:PORT) once the broker is ready
// and runs until Ctrl-C, then stops the broker and removes its data.
//
//	go run ./pkg/laddertest/realkafka/cmd/kafka [-nodes 3] [-set key=value]...
//	go run ./pkg/laddertest/realkafka/cmd/kafka -check   # exit 1 if java or mvn is missing
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ladder/ladder/pkg/laddertest/realkafka"
)

type settings map[string]string

func (s settings) String() string { return fmt.Sprint(map[string]string(s)) }

func (s settings) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	s[k] = val
	return nil
}

func main() {
	os.Exit(run())
}

func run() int {
	cfg := realkafka.Config{BrokerConfig: settings{}}
	check := flag.Bool("check", false, "only say whether this machine can run Kafka (java, and mvn unless Kafka is cached); exit 1 if not")
	flag.IntVar(&cfg.Nodes, "nodes", 1, "number of nodes (each broker and controller); 3 or more: replication factor 3, min.insync.replicas=2")
	flag.StringVar(&cfg.Heap, "heap", "1g", "maximum JVM heap of each node")
	flag.Var(settings(cfg.BrokerConfig), "set", "a broker setting key=value for server.properties (repeatable), e.g. -set auto.create.topics.enable=true")
	flag.Parse()
	if missing := realkafka.Missing(); *check || missing != "" {
		if missing != "" {
			fmt.Fprintf(os.Stderr, "Apache Kafka %s cannot run here: missing %s\n", realkafka.Version, missing)
			return 1
		}
		fmt.Fprintf(os.Stderr, "Apache Kafka %s can run here\n", realkafka.Version)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	began := time.Now()
	fmt.Fprintf(os.Stderr, "starting Apache Kafka %s (%d node(s); the first run fetches it with Maven into the cache)...\n", realkafka.Version, cfg.Nodes)
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	c, err := realkafka.Start(startCtx, cfg)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "ready in %s; logs in %s/node-*/server.log; Ctrl-C stops it and removes its data\n",
		time.Since(began).Round(100*time.Millisecond), c.Dir())
	fmt.Println(c.Bootstrap())
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "stopping Apache Kafka...")
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
