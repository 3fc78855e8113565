//go:build !nodev

package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/forward"
	"github.com/ladder/ladder/pkg/tier"
)

// TestDevRefusesBusyMetricsAddress: a metrics port that is taken stops
// `ladder dev` before its banner (which would name the address), with exit
// 1 naming the address and how to choose another, instead of running on
// without forwarders.
func TestDevRefusesBusyMetricsAddress(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, args := range [][]string{
		{"dev", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--http-addr", busy.Addr().String()},
		{"dev", "--demo", "--addr", "127.0.0.1:0", "--http-addr", busy.Addr().String()},
	} {
		p := start(t, []string{"TMPDIR=" + t.TempDir()}, args...)
		var err error
		select {
		case err = <-p.done:
			p.done <- err // for the cleanup
		case <-time.After(60 * time.Second):
			t.Fatalf("ladder %s still runs 60s after its forwarder stopped:\n%s", strings.Join(args, " "), p.out)
		}
		var exit *exec.ExitError
		out := p.out.String()
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("ladder %s: %v, want exit 1", strings.Join(args, " "), err)
		}
		for _, w := range []string{
			"ladder dev: listening for metrics and health on " + busy.Addr().String(),
			"address already in use; choose another metrics address with --http-addr or LADDER_HTTP_ADDR (make demo: DEMO_METRICS_ADDR=",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("ladder %s lacks %q:\n%s", strings.Join(args, " "), w, out)
			}
		}
		if strings.Contains(out, "embedded Kafka broker on") {
			t.Errorf("ladder %s printed its banner, naming a metrics address it cannot serve:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestDevStopsWhenItsForwarderStops: a forwarder that stops on an error
// stops ladder dev, demo or not, with exit 1 and the error, instead of
// running on with a status of zeros (issue 11: a busy port stopped the
// forwarder, and the demo went on printing).
func TestDevStopsWhenItsForwarderStops(t *testing.T) {
	defer func(f func(context.Context, Config, *tier.Ladder, zerolog.Logger, *prometheus.Registry, net.Listener, ...func(*forward.Config)) error) {
		devForwarder = f
	}(devForwarder)
	devForwarder = func(ctx context.Context, _ Config, _ *tier.Ladder, _ zerolog.Logger, _ *prometheus.Registry, ln net.Listener, _ ...func(*forward.Config)) error {
		if ln != nil {
			defer ln.Close() // as runForwarder's server does
		}
		select {
		case <-time.After(200 * time.Millisecond):
			return errors.New("the group coordinator refused us")
		case <-ctx.Done():
			return nil
		}
	}
	for _, extra := range [][]string{nil, {"--demo"}} {
		args := append([]string{"dev", "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, extra...)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var stdout, stderr syncBuffer // the demo's workers log from goroutines of their own
		code := Main(ctx, args, nil, &stdout, &stderr)
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut || code != 1 || !strings.Contains(stdout.String(), "ladder dev: stopped, see the error below") ||
			!strings.Contains(stderr.String(), "forwarder stopped: the group coordinator refused us") {
			t.Errorf("ladder %s: exit %d (still running after a minute: %v)\n%s%s", strings.Join(args, " "), code, timedOut, stdout.String(), stderr.String())
		}
	}
}

// TestDevBanner: the banner says where metrics listen, what work-ahead does
// and why (each lane unattended until a worker joins), and enters the kcat
// example's 90 s message through the largest tier that fits; with
// --forwarders=false it claims no work-ahead.
func TestDevBanner(t *testing.T) {
	p := start(t, nil, "dev", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--tiers", "1s,10s,1m,5m")
	banner := waitFor(t, p, "  inspect:")
	// The address bound, not the one asked for (port 0).
	if m := regexp.MustCompile(`metrics       http://127\.0\.0\.1:(\d+)/metrics`).FindStringSubmatch(banner); m == nil || m[1] == "0" {
		t.Errorf("banner does not name the metrics port bound (%v):\n%s", m, banner)
	}
	for _, w := range []string{
		"work-ahead    on: a lane's earliest held messages leave early (ladder-early) only while its worker group\n" +
			"                has members and its lag is under 100. Now:\n" +
			"                work unattended: worker group work-workers has no member reading work: nobody consumes it, so nothing leaves early",
		"-t delay-1m -H ladder-target=work -H ladder-due=",
		"--workahead-lanes work=work-workers",
	} {
		if !strings.Contains(banner, w) {
			t.Errorf("banner lacks %q:\n%s", w, banner)
		}
	}

	p = start(t, nil, "dev", "--forwarders=false", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	banner = waitFor(t, p, "  inspect:")
	if strings.Contains(banner, "work-ahead    on") || !strings.Contains(banner, "work-ahead    decided by the ladder run you start") ||
		!strings.Contains(banner, "metrics       none here") {
		t.Errorf("--forwarders=false banner:\n%s", banner)
	}
}

// TestDevUsage: `ladder dev -h` shows each boolean flag as a flag, without a
// value name taken from back-quoted words of its description.
func TestDevUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"dev", "-h"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("ladder dev -h: exit %d", code)
	}
	usage := stderr.String()
	if m := regexp.MustCompile(`(?m)^  -(forwarders|demo) \S.*$`).FindString(usage); m != "" || !strings.Contains(usage, "\n  -forwarders\n") {
		t.Errorf("ladder dev -h: %q\n%s", m, usage)
	}
	// The shared --brokers names an external cluster: dev says it is not
	// used, and refuses it rather than ignoring it (a review's --brokers
	// 10.1.2.3:9092 had no effect).
	if !strings.Contains(usage, "not used: ladder dev runs its own broker, on --addr") {
		t.Errorf("ladder dev -h does not say --brokers is not used:\n%s", usage)
	}
	stdout.Reset()
	stderr.Reset()
	if code := Main(context.Background(), []string{"dev", "--brokers", "10.1.2.3:9092"}, nil, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "give its address with --addr") {
		t.Errorf("ladder dev --brokers: exit %d, %s%s", code, stdout.String(), stderr.String())
	}
}

// TestDevHTTPAddr: ladder dev serves metrics on its broker's host, loopback
// by default, unless told otherwise.
func TestDevHTTPAddr(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:9092": "127.0.0.1:8080", "[::1]:9092": "[::1]:8080", ":9092": "127.0.0.1:8080",
		"localhost:0": "localhost:8080", "nonsense": "127.0.0.1:8080"} {
		if got := devHTTPAddr(in); got != want {
			t.Errorf("devHTTPAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDemoRemovesItsDataDir: the demo keeps its data in a temporary
// directory, removed when it stops; a directory the user gave is kept.
func TestDemoRemovesItsDataDir(t *testing.T) {
	tmp := t.TempDir()
	given := filepath.Join(t.TempDir(), "mine")
	for _, extra := range [][]string{nil, {"--data-dir", given}} {
		p := start(t, []string{"TMPDIR=" + tmp}, append([]string{"dev", "--demo", "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, extra...)...)
		banner := waitFor(t, p, "  inspect:")
		m := regexp.MustCompile(`\(data in (\S+?)(, removed at exit)?\)`).FindStringSubmatch(banner)
		if m == nil {
			t.Fatalf("no data directory in the banner:\n%s", banner)
		}
		dir, removed := m[1], m[2] != ""
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("data directory %s: %v", dir, err)
		}
		waitFor(t, p, "── ladder demo") // a status: the demo runs
		if err := p.stop(t, syscall.SIGINT, 30*time.Second); err != nil {
			t.Errorf("ladder dev --demo %v exited with %v on SIGINT\n%s", extra, err, p.out)
		}
		_, err := os.Stat(dir)
		switch {
		case extra == nil && (!removed || !strings.HasPrefix(dir, tmp) || !os.IsNotExist(err)):
			t.Errorf("the demo's own data directory %s (in TMPDIR %v, said removed %v) is left: %v", dir, strings.HasPrefix(dir, tmp), removed, err)
		case extra != nil && (removed || dir != given || err != nil):
			t.Errorf("the given data directory %s (banner %s, said removed %v): %v", given, dir, removed, err)
		}
	}
}

// TestSelfCommand: the banner's hints name the binary as "ladder" only when
// PATH finds this very binary under that name; else by its path (make demo
// runs bin/ladder before anything is installed).
func TestSelfCommand(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	if got := selfCommand(); got == "ladder" || !strings.HasSuffix(got, filepath.Base(exe)) {
		t.Errorf("without ladder on PATH: %q, want the path of %s", got, exe)
	}
	if err := os.Symlink(exe, filepath.Join(dir, "ladder")); err != nil {
		t.Fatal(err)
	}
	if got := selfCommand(); got != "ladder" {
		t.Errorf("with this binary on PATH as ladder: %q", got)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "ladder"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", other)
	if got := selfCommand(); got == "ladder" {
		t.Error("another ladder on PATH: the hints would run it")
	}
}
