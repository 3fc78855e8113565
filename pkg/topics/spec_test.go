package topics

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const base = `
defaults:
  partitions: 6
  replicationFactor: 3
  minInsyncReplicas: 2
  maxOutage: 1d
ladder:
  tiers: [1m, 1h]
lanes:
  topics: [work]
`

// TestRepositorySpec checks the shipped topics/topics.yaml and what it resolves to.
func TestRepositorySpec(t *testing.T) {
	s, err := Load("../../topics/topics.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Topic{}
	var names []string
	for _, tp := range s.Topics() {
		got[tp.Name] = tp
		names = append(names, tp.Name)
	}
	want := "delay-1m delay-15m delay-1h delay-6h delay-dlq delay-control work-fast work-slow"
	if strings.Join(names, " ") != want {
		t.Fatalf("topics %v, want %s", names, want)
	}
	if c := got["delay-control"]; c.Partitions != 1 || c.Retention() != 24*time.Hour {
		t.Errorf("control topic: %d partitions, retention %s; want 1 and 24h", c.Partitions, c.Retention())
	}
	six := got["delay-6h"]
	// (6h + 3d) + 10% = 85h48m
	if six.Partitions != 24 || six.ReplicationFactor != 3 || six.Retention() != 85*time.Hour+48*time.Minute {
		t.Errorf("delay-6h: %d partitions, rf %d, retention %s", six.Partitions, six.ReplicationFactor, six.Retention())
	}
	for _, tp := range s.Topics() {
		if tp.Configs["cleanup.policy"] != "delete" || tp.Configs["min.insync.replicas"] != "2" {
			t.Errorf("%s: configs %v", tp.Name, tp.Configs)
		}
		if tp.Role == RoleTier && tp.Retention() <= tp.Delay+72*time.Hour {
			t.Errorf("%s: retention %s does not exceed delay + maxOutage", tp.Name, tp.Retention())
		}
	}
	if r := got["delay-dlq"].Retention(); r != 14*24*time.Hour {
		t.Errorf("dead-letter retention %s", r)
	}
	if c := got["work-slow"].Configs["max.message.bytes"]; c != "2097152" {
		t.Errorf("work-slow max.message.bytes=%q", c)
	}
	if s.TierLadder().String() != "1m,15m,1h,6h" || s.TierLadder().DLQTopic() != "delay-dlq" {
		t.Errorf("ladder %s", s.TierLadder())
	}
}

func TestDerivedAndExplicitRetention(t *testing.T) {
	s, err := Parse([]byte(base + `
overrides:
  delay-1h:
    retention: 3d
    partitions: 12
    configs:
      compression.type: ZSTD
      preallocate: "TRUE"
      segment.ms: "03600000"
  work:
    retention: 2h
`))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Topic{}
	for _, tp := range s.Topics() {
		byName[tp.Name] = tp
	}
	// 1m + 1d, plus 10%, rounded up to the second.
	if r := byName["delay-1m"].Retention(); r != 26*time.Hour+25*time.Minute+6*time.Second {
		t.Errorf("derived retention of delay-1m: %s", r)
	}
	h := byName["delay-1h"]
	if h.Retention() != 72*time.Hour || h.Partitions != 12 {
		t.Errorf("delay-1h: retention %s, %d partitions", h.Retention(), h.Partitions)
	}
	// Values are normalized the way Kafka reports them, so a second apply sees no difference.
	if h.Configs["compression.type"] != "zstd" || h.Configs["preallocate"] != "true" || h.Configs["segment.ms"] != "3600000" {
		t.Errorf("delay-1h configs not normalized: %v", h.Configs)
	}
	if r := byName["work"].Retention(); r != 2*time.Hour {
		t.Errorf("lane retention %s", r)
	}
	if r := byName["delay-dlq"].Retention(); r != DefaultDeadLetterRetention {
		t.Errorf("dead-letter retention %s", r)
	}
}

// TestInvalidSpecs: each bad spec is refused with a message naming the
// topic or field and the numbers.
func TestInvalidSpecs(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec string
		want []string
	}{
		{"typo in a field", strings.Replace(base, "partitions", "partitons", 1), []string{"field partitons not found"}},
		{"typo in an override field", base + "overrides:\n  work:\n    retension: 2d\n", []string{"field retension not found"}},
		{"tier retention below delay + maxOutage", base + "overrides:\n  delay-1h:\n    retention: 20h\n",
			[]string{"topic delay-1h", "retention 20h (72000000 ms) does not exceed its delay 1h + maxOutage 1d = 1d1h (90000000 ms)"}},
		{"tier retention equal to delay + maxOutage", base + "overrides:\n  delay-1m:\n    retention: 1441m\n",
			[]string{"topic delay-1m", "retention 1d1m", "does not exceed", "= 1d1m (86460000 ms)"}},
		{"min.insync.replicas above replication factor", base + "overrides:\n  delay-1m:\n    replicationFactor: 1\n",
			[]string{"topic delay-1m", "minInsyncReplicas 2 exceeds replicationFactor 1"}},
		{"min.insync.replicas above replication factor by default", strings.Replace(base, "minInsyncReplicas: 2", "minInsyncReplicas: 4", 1),
			[]string{"topic delay-1m: minInsyncReplicas 4 exceeds replicationFactor 3", "topic work: minInsyncReplicas 4"}},
		{"unknown config", base + "overrides:\n  work:\n    configs:\n      retention.msx: \"1\"\n",
			[]string{"overrides.work.configs", `"retention.msx" is not a Kafka topic config (did you mean retention.ms?)`}},
		{"unknown default config", strings.Replace(base, "maxOutage: 1d", "maxOutage: 1d\n  configs:\n    foo.bar: x", 1),
			[]string{"defaults.configs", `"foo.bar" is not a Kafka topic config`}},
		{"bad config value", base + "overrides:\n  work:\n    configs:\n      max.message.bytes: big\n",
			[]string{`max.message.bytes="big": want a whole number`}},
		{"cleanup.policy compact", base + "overrides:\n  work:\n    configs:\n      cleanup.policy: compact\n",
			[]string{"cleanup.policy cannot be set here", "compaction would drop records"}},
		{"retention.ms in configs", base + "overrides:\n  work:\n    configs:\n      retention.ms: \"1000\"\n",
			[]string{"retention.ms cannot be set here: use retention"}},
		{"retention.bytes on a tier", base + "overrides:\n  delay-1m:\n    configs:\n      retention.bytes: \"1000000\"\n",
			[]string{"retention.bytes=1000000 would apply to a tier"}},
		{"invalid lane name", strings.Replace(base, "[work]", "[work fast]", 1), []string{"lanes.topics", `"work fast"`, "character ' '"}},
		{"lane named like a tier", strings.Replace(base, "[work]", "[delay-1m]", 1), []string{"delay-1m is listed twice or is a topic of the ladder"}},
		{"override of an unknown topic", base + "overrides:\n  wrok:\n    partitions: 3\n", []string{"overrides.wrok: not a topic of this spec"}},
		{"invalid prefix", strings.Replace(base, "ladder:\n", "ladder:\n  topicPrefix: \"delay/\"\n", 1), []string{"ladder:", "delay/"}},
		{"bad tier", strings.Replace(base, "[1m, 1h]", "[1m, 1x]", 1), []string{"ladder:", `"1x"`}},
		{"no tiers", strings.Replace(base, "tiers: [1m, 1h]", "tiers: []", 1), []string{"ladder.tiers is empty"}},
		{"no maxOutage", strings.Replace(base, "  maxOutage: 1d\n", "", 1), []string{"defaults.maxOutage is missing"}},
		{"bad duration", strings.Replace(base, "maxOutage: 1d", "maxOutage: 3 days", 1), []string{`"3 days" is not a positive duration`}},
		{"zero partitions", strings.Replace(base, "partitions: 6", "partitions: 0", 1), []string{"defaults.partitions is 0"}},
		{"partitions not a number", strings.Replace(base, "partitions: 6", "partitions: six", 1), []string{"cannot unmarshal", "six"}},
		{"empty", "", []string{"the file is empty"}},
		{"two documents", base + "---\n" + base, []string{"more than one YAML document"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.spec))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.spec)
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error does not wrap ErrInvalidSpec: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestEveryProblemReported: a spec with several problems names all of them.
func TestEveryProblemReported(t *testing.T) {
	_, err := Parse([]byte(base + `
overrides:
  delay-1h:
    retention: 2h
  work:
    minInsyncReplicas: 5
    configs:
      segmnt.ms: "1"
`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"topic delay-1h: retention 2h", "topic work: minInsyncReplicas 5", "segmnt.ms"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}
