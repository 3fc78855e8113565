package inspect

import (
	"time"
)

// Report is the state of a ladder at one moment. Its JSON form is what
// `ladder inspect --json` prints; field names are stable. Times are RFC 3339
// in UTC with milliseconds; durations are whole milliseconds (_ms).
type Report struct {
	// At is when the report was taken; every age and overdue figure is relative to it.
	At         time.Time `json:"at"`
	Group      string    `json:"group"`
	GroupState string    `json:"group_state"` // Stable, PreparingRebalance, Empty, Dead (never existed or no members) ...
	Members    []Member  `json:"members"`
	Tiers      []Tier    `json:"tiers"`
	DeadLetter Topic     `json:"dead_letter"`
	// WorkAhead is each work-ahead lane the inspector was given
	// (LADDER_WORKAHEAD_LANES), sorted by lane; empty when none was.
	WorkAhead []Lane   `json:"work_ahead"`
	Summary   Summary  `json:"summary"`
	Warnings  []string `json:"warnings"`
}

// Lane is a work-ahead lane: whether the forwarders release heads early for
// it, and why. Only "idle" releases early: the worker group has members and
// its lag is under the threshold.
type Lane struct {
	Lane    string `json:"lane"`
	Group   string `json:"group"`   // the lane's worker group
	Members int    `json:"members"` // its members reading the lane (0 while the state is unknown)
	Lag     int64  `json:"lag"`
	// State is unknown (not readable), unattended (no member), busy (lag at
	// or above the threshold) or idle (releasing early).
	State  string `json:"state"`
	Reason string `json:"reason"`
}

// Member is one member of the forwarder group.
type Member struct {
	MemberID string `json:"member_id"`
	ClientID string `json:"client_id"`
	Host     string `json:"host"`
	// Assigned maps each topic to the partitions the member holds.
	Assigned map[string][]int32 `json:"assigned"`
}

// Tier is one tier topic.
type Tier struct {
	Topic   string `json:"topic"`
	DelayMS int64  `json:"delay_ms"`
	// RetentionMS is the topic's retention.ms (-1: unlimited, 0: unknown).
	RetentionMS int64       `json:"retention_ms"`
	Missing     bool        `json:"missing,omitempty"` // the topic does not exist
	Partitions  []Partition `json:"partitions"`
	// Totals over the partitions.
	Pending           int64      `json:"pending"`
	OverduePartitions int        `json:"overdue_partitions"` // heads past their release time
	MaxOverdueMS      int64      `json:"max_overdue_ms"`     // the most overdue head (0 when none is)
	NextReleaseAt     *time.Time `json:"next_release_at"`    // the earliest head release time, null when nothing is pending
	MaxRetentionUsed  float64    `json:"max_retention_used"` // the largest head age / retention of its partitions
}

// Partition is one tier partition.
type Partition struct {
	Partition      int32 `json:"partition"`
	LogStartOffset int64 `json:"log_start_offset"`
	EndOffset      int64 `json:"end_offset"`
	// CommittedOffset is the forwarder group's committed offset, -1 when the
	// group never committed one for this partition.
	CommittedOffset int64 `json:"committed_offset"`
	// NextOffset is where forwarding resumes: the committed offset, or the
	// log start offset when nothing (or something already deleted) was committed.
	NextOffset int64 `json:"next_offset"`
	// LastStableOffset is where the open transactions begin (exactly-once
	// forwarders write the tiers in transactions): records from it on are not
	// delivered to the forwarders until their transaction commits. It equals
	// EndOffset when no transaction is open.
	LastStableOffset int64 `json:"last_stable_offset"`
	// Pending counts the records not yet forwarded: from the head to the last
	// record before LastStableOffset. Transaction markers take offsets but
	// are no records: those before the head and after the last record are
	// not counted; those between records (one per transaction) are.
	Pending int64 `json:"pending"`
	// OpenTransaction is set while a transaction is open in the partition;
	// Uncommitted is EndOffset - LastStableOffset, the offsets it holds.
	OpenTransaction bool  `json:"open_transaction,omitempty"`
	Uncommitted     int64 `json:"uncommitted,omitempty"`
	// Parked counts records waiting for their target topic to exist or to
	// accept writes, listed in the commit's metadata: the commit stays at
	// the first of them while the records behind them are forwarded, and
	// Pending counts the parked records, not those forwarded past them.
	Parked int64 `json:"parked,omitempty"`
	// Lost counts records deleted by retention before they were forwarded
	// (committed offset below the log start).
	Lost  int64  `json:"lost,omitempty"`
	Owner string `json:"owner"` // member id holding the partition, "" when none
	Head  *Head  `json:"head"`  // the record at NextOffset, null when nothing is pending
	// OldestTimestamp and OldestAgeMS describe the oldest retained record
	// (forwarded or not); null / 0 for an empty partition.
	OldestTimestamp *time.Time `json:"oldest_timestamp"`
	OldestAgeMS     int64      `json:"oldest_age_ms"`
	// RetentionUsed is the head's age / retention.ms: at 1 the next record
	// to forward becomes eligible for deletion. 0 without a head or retention.
	RetentionUsed float64 `json:"retention_used"`
	RetentionRisk bool    `json:"retention_risk"` // RetentionUsed above the warning threshold
	Error         string  `json:"error,omitempty"`
}

// Head is the next record a tier partition will forward.
type Head struct {
	Offset    int64      `json:"offset"`
	Timestamp time.Time  `json:"timestamp"`
	Target    string     `json:"target"`
	Due       *time.Time `json:"due"` // ladder-due, null when absent
	Hops      int        `json:"hops"`
	// ReleaseAt is min(timestamp + tier delay, due): when the forwarder lets it go.
	ReleaseAt time.Time `json:"release_at"`
	// OverdueMS is At - ReleaseAt: positive when the head is overdue,
	// negative while it is held (its absolute value is then the time left).
	OverdueMS int64 `json:"overdue_ms"`
	AgeMS     int64 `json:"age_ms"` // At - Timestamp
	// Error is set when the headers cannot be decoded: the forwarder will
	// dead-letter the record with this reason.
	Error string `json:"error,omitempty"`
}

// Topic is a topic counted as a whole (the dead-letter topic).
type Topic struct {
	Topic   string `json:"topic"`
	Missing bool   `json:"missing,omitempty"`
	// Records is the number of records retained (end - log start, summed over partitions).
	Records int64 `json:"records"`
}

// Summary is the report in a few numbers.
type Summary struct {
	Tiers             int   `json:"tiers"`
	Pending           int64 `json:"pending"`
	OverduePartitions int   `json:"overdue_partitions"`
	MaxOverdueMS      int64 `json:"max_overdue_ms"`
	Members           int   `json:"members"`
	DeadLetterRecords int64 `json:"dead_letter_records"`
	Warnings          int   `json:"warnings"`
	// OpenTransactions counts tier partitions with a transaction open.
	OpenTransactions int `json:"open_transactions,omitempty"`
}
