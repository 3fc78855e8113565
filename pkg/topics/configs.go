package topics

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// kafkaTopicConfigs are the topic-level configs of Apache Kafka 3.x and 4.x
// (org.apache.kafka.common.config.TopicConfig and the tiered-storage ones).
// The embedded broker accepts any name silently where Kafka refuses an unknown
// one, so the spec checks names itself.
var kafkaTopicConfigs = map[string]configKind{
	"cleanup.policy":                          kindString,
	"compression.type":                        kindLower,
	"compression.gzip.level":                  kindInt,
	"compression.lz4.level":                   kindInt,
	"compression.zstd.level":                  kindInt,
	"delete.retention.ms":                     kindInt,
	"file.delete.delay.ms":                    kindInt,
	"flush.messages":                          kindInt,
	"flush.ms":                                kindInt,
	"follower.replication.throttled.replicas": kindString,
	"index.interval.bytes":                    kindInt,
	"leader.replication.throttled.replicas":   kindString,
	"local.retention.bytes":                   kindInt,
	"local.retention.ms":                      kindInt,
	"max.compaction.lag.ms":                   kindInt,
	"max.message.bytes":                       kindInt,
	"message.downconversion.enable":           kindBool,
	"message.format.version":                  kindString,
	"message.timestamp.after.max.ms":          kindInt,
	"message.timestamp.before.max.ms":         kindInt,
	"message.timestamp.difference.max.ms":     kindInt,
	"message.timestamp.type":                  kindString,
	"min.cleanable.dirty.ratio":               kindFloat,
	"min.compaction.lag.ms":                   kindInt,
	"min.insync.replicas":                     kindInt,
	"preallocate":                             kindBool,
	"remote.log.copy.disable":                 kindBool,
	"remote.log.delete.on.disable":            kindBool,
	"remote.storage.enable":                   kindBool,
	"retention.bytes":                         kindInt,
	"retention.ms":                            kindInt,
	"segment.bytes":                           kindInt,
	"segment.index.bytes":                     kindInt,
	"segment.jitter.ms":                       kindInt,
	"segment.ms":                              kindInt,
	"unclean.leader.election.enable":          kindBool,
}

type configKind int

const (
	kindString configKind = iota
	kindLower             // a keyword Kafka compares in lower case
	kindInt
	kindFloat
	kindBool
)

// managedConfigs are set from dedicated spec fields; giving them under
// configs would make two sources of truth.
var managedConfigs = map[string]string{
	"cleanup.policy":      "every topic of a ladder is cleanup.policy=delete (compaction would drop records that share a key)",
	"min.insync.replicas": "use minInsyncReplicas",
	"retention.ms":        "use retention (such as 4d); a tier's retention is derived from its delay and maxOutage",
}

// IsTopicConfig reports whether name is a Kafka topic-level config.
func IsTopicConfig(name string) bool {
	_, ok := kafkaTopicConfigs[name]
	return ok
}

// checkConfigs checks the names and values of extra configs and normalizes
// the values the way Kafka reports them, so a second apply sees no
// difference. role is the topic's role, or "" for configs every topic gets.
// It returns the problems found.
func checkConfigs(where string, cfgs map[string]string, role string) []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(cfgs)) {
		value := cfgs[name]
		kind, known := kafkaTopicConfigs[name]
		if !known {
			errs = append(errs, fmt.Errorf("%s: %q is not a Kafka topic config%s", where, name, suggest(name)))
			continue
		}
		if why, managed := managedConfigs[name]; managed {
			errs = append(errs, fmt.Errorf("%s: %s cannot be set here: %s", where, name, why))
			continue
		}
		if name == "retention.bytes" && (role == RoleTier || role == "") && value != "-1" {
			errs = append(errs, fmt.Errorf("%s: retention.bytes=%s would apply to a tier: size-based retention can delete records "+
				"before they are forwarded (set it per lane or dead-letter topic under overrides)", where, value))
			continue
		}
		norm, err := normalize(kind, value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s=%q: %w", where, name, value, err))
			continue
		}
		cfgs[name] = norm
	}
	return errs
}

func normalize(kind configKind, v string) (string, error) {
	switch kind {
	case kindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return "", fmt.Errorf("want a whole number")
		}
		return strconv.FormatInt(n, 10), nil
	case kindFloat:
		if _, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
			return "", fmt.Errorf("want a number")
		}
		return strings.TrimSpace(v), nil
	case kindBool:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return "", fmt.Errorf("want true or false")
		}
		return strconv.FormatBool(b), nil
	case kindLower:
		return strings.ToLower(strings.TrimSpace(v)), nil
	}
	if v == "" {
		return "", fmt.Errorf("empty value")
	}
	return v, nil
}

// suggest names the known config closest to a misspelled one.
func suggest(name string) string {
	best, bestD := "", 4
	for k := range kafkaTopicConfigs {
		if d := editDistance(name, k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
