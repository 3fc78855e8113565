package worker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/tier"
	"github.com/ladder/ladder/pkg/worker"
)

func TestNewRefusesBadLanes(t *testing.T) {
	l, err := tier.Parse(testTiers, tier.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	cfg := worker.Config{Kafka: laddertest.Kafka("127.0.0.1:9092"), Ladder: l}
	h := func(context.Context, worker.Message) worker.Result { return worker.Done() }
	tests := []struct {
		name  string
		cfg   worker.Config
		lanes []worker.Lane
		want  string
	}{
		{"no lanes", cfg, nil, "no lanes"},
		{"no ladder", worker.Config{Kafka: cfg.Kafka}, []worker.Lane{{Topics: []string{"work"}, Handler: h}}, "no ladder"},
		{"no topics", cfg, []worker.Lane{{Handler: h}}, "no topics"},
		{"no handler", cfg, []worker.Lane{{Topics: []string{"work"}}}, "no handler"},
		{"tier as lane", cfg, []worker.Lane{{Topics: []string{"delay-1s"}, Handler: h}}, "topic of the ladder"},
		{"dead-letter topic as lane", cfg, []worker.Lane{{Topics: []string{"delay-dlq"}, Handler: h}}, "topic of the ladder"},
		{"bad topic name", cfg, []worker.Lane{{Topics: []string{"a b"}, Handler: h}}, `topic "a b"`},
		{"shared group", cfg, []worker.Lane{{Topics: []string{"a"}, Group: "g", Handler: h}, {Topics: []string{"b"}, Group: "g", Handler: h}},
			"consumer group g is used by another lane"},
		{"bad brokers", worker.Config{Kafka: laddertest.Kafka("nowhere"), Ladder: l}, []worker.Lane{{Topics: []string{"a"}, Handler: h}},
			"LADDER_BROKERS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := worker.New(tt.cfg, tt.lanes...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	w, err := worker.New(cfg, worker.Lane{Topics: []string{"work-fast"}, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	if s := w.Stats()[0]; s.Lane != "work-fast" {
		t.Errorf("lane named %q, want work-fast", s.Lane)
	}
}
