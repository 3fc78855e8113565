package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
)

// TestBadConfigurationNamesTheVariable: a bad value stops the program with
// exit code 2 and a message naming the variable (or flag) and what it accepts.
func TestBadConfigurationNamesTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{env: map[string]string{"LADDER_TIERS": "1x"}, args: []string{"run"}, want: `invalid LADDER_TIERS="1x": accepted: distinct positive delays`},
		{args: []string{"run", "--tiers", "1m,60s"}, want: `invalid --tiers="1m,60s"`},
		{env: map[string]string{"LADDER_TOPIC_PREFIX": "bad prefix"}, args: []string{"run"}, want: `invalid LADDER_TOPIC_PREFIX="bad prefix"`},
		{env: map[string]string{"LADDER_RESUME_LEAD": "soon"}, args: []string{"run"}, want: `invalid LADDER_RESUME_LEAD="soon": accepted: a duration`},
		{env: map[string]string{"LADDER_MAX_IN_FLIGHT": "0"}, args: []string{"run"}, want: `invalid LADDER_MAX_IN_FLIGHT="0": accepted: a whole number from 1`},
		{env: map[string]string{"LADDER_LOG_LEVEL": "loud"}, args: []string{"run"}, want: `invalid LADDER_LOG_LEVEL="loud": accepted: trace, debug, info, warn, error`},
		{args: []string{"run", "--log-format", "xml"}, want: `invalid --log-format="xml": accepted: json, console, auto`},
		{env: map[string]string{"LADDER_BROKERS": "no-port"}, args: []string{"run"}, want: `invalid LADDER_BROKERS="no-port": accepted: one or more host:port`},
		{env: map[string]string{"LADDER_KAFKA_VERSION": "three"}, args: []string{"run"}, want: `invalid LADDER_KAFKA_VERSION="three"`},
		{args: []string{"dev", "--partitions", "0"}, want: `invalid --partitions="0": accepted: a whole number from 1 to 1000`},
		{args: []string{"schedule", "--topic", "work", "x"}, want: `give --delay (e.g. 90m) or --at`},
		{args: []string{"schedule", "--topic", "work", "--delay", "soon", "x"}, want: `--delay: "soon": accepted: a duration`},
		{args: []string{"schedule", "--topic", "bad topic", "--delay", "1m", "x"}, want: `--topic: topic name "bad topic"`},
		{args: []string{"run", "extra"}, want: `unexpected arguments: extra`},
		{args: []string{"nope"}, want: `unknown command "nope"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), tc.args, strings.NewReader(""), &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

// TestRunPathHasNoEmbeddedBroker: built with -tags nodev (the production
// image), the binary does not contain kfake or the dev broker at all.
func TestRunPathHasNoEmbeddedBroker(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "nodev", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list printed %q", out)
	}
	for _, dep := range deps {
		if strings.Contains(dep, "kfake") || strings.HasSuffix(dep, "/devbroker") {
			t.Errorf("the nodev build depends on %s", dep)
		}
	}
}
