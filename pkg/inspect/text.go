package inspect

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ladder/ladder/pkg/tier"
)

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// WriteText prints the report for people: a table of tier partitions with
// a total line per tier (one line instead when nothing is pending in any
// tier), the group's members, the dead-letter count, the work-ahead lanes,
// the warnings and a summary line.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	state := r.GroupState
	if state == "" {
		state = "unknown"
	}
	fmt.Fprintf(&b, "ladder at %s, group %s: %s, %d members\n\n", r.At.Format(timeFormat), r.Group, state, len(r.Members))
	if r.Empty() {
		parts, names := 0, make([]string, len(r.Tiers))
		for k, t := range r.Tiers {
			parts += len(t.Partitions)
			names[k] = t.Topic
		}
		fmt.Fprintf(&b, "empty: nothing pending in %d tiers (%s; %d partitions)\n", len(r.Tiers), strings.Join(names, " "), parts)
	} else if err := r.writeTiers(&b); err != nil {
		return err
	}

	b.WriteString("\nmembers:\n")
	if len(r.Members) == 0 {
		b.WriteString("  (none: no forwarder is running)\n")
	}
	for k, m := range r.Members {
		var parts []string
		for _, t := range slices.Sorted(maps.Keys(m.Assigned)) {
			ps := make([]string, len(m.Assigned[t]))
			for j, p := range m.Assigned[t] {
				ps[j] = fmt.Sprint(p)
			}
			parts = append(parts, fmt.Sprintf("%s[%s]", t, strings.Join(ps, ",")))
		}
		fmt.Fprintf(&b, "  #%d %s client=%s host=%s: %s\n", k+1, m.MemberID, m.ClientID, m.Host, strings.Join(parts, " "))
	}
	if r.DeadLetter.Missing {
		fmt.Fprintf(&b, "dead-letter %s: missing\n", r.DeadLetter.Topic)
	} else {
		fmt.Fprintf(&b, "dead-letter %s: %s\n", r.DeadLetter.Topic, count(r.DeadLetter.Records, "record"))
	}
	if len(r.WorkAhead) > 0 {
		b.WriteString("work-ahead (releases early only while a lane's worker group has members and a low lag):\n")
		for _, l := range r.WorkAhead {
			fmt.Fprintf(&b, "  %s: %s: %s\n", l.Lane, l.State, l.Reason)
		}
	}
	if len(r.Warnings) > 0 {
		b.WriteString("warnings:\n")
		for _, w := range r.Warnings {
			fmt.Fprintf(&b, "  - %s\n", w)
		}
	}
	b.WriteString(r.Summary.Line() + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// writeTiers prints the table of tier partitions, with a total line per tier.
func (r *Report) writeTiers(b *strings.Builder) error {
	memberNo := map[string]int{}
	for k, m := range r.Members {
		memberNo[m.MemberID] = k + 1
	}
	tw := tabwriter.NewWriter(b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tPART\tPENDING\tNEXT OFFSET\tHEAD DUE\tHEAD RELEASE\tSTATUS\tHEAD AGE\tOF RETENTION\tOWNER")
	for _, t := range r.Tiers {
		if t.Missing {
			fmt.Fprintf(tw, "%s\t-\tmissing\t\t\t\t\t\t\t\n", t.Topic)
			continue
		}
		for _, p := range t.Partitions {
			due, release, status, age, used := "-", "-", "", "-", "-"
			if h := p.Head; h != nil {
				if h.Due != nil {
					due = h.Due.Format(timeFormat)
				} else {
					due = "(none)"
				}
				release = h.ReleaseAt.Format(timeFormat)
				status = headStatus(h)
				age = human(time.Duration(h.AgeMS) * time.Millisecond)
				if t.RetentionMS > 0 {
					used = fmt.Sprintf("%.0f%%", 100*p.RetentionUsed)
				}
			}
			if p.OpenTransaction {
				status += fmt.Sprintf(" (open transaction: %d offsets)", p.Uncommitted)
			}
			if p.Error != "" {
				status = "error: " + p.Error
			}
			if p.Lost > 0 {
				status += fmt.Sprintf(" (%d lost)", p.Lost)
			}
			if p.Parked > 0 {
				status += fmt.Sprintf(" (%d parked: target missing or refusing writes)", p.Parked)
			}
			owner := "-"
			if n, ok := memberNo[p.Owner]; ok {
				owner = fmt.Sprintf("#%d", n)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
				t.Topic, p.Partition, p.Pending, p.NextOffset, due, release, strings.TrimSpace(status), age, used, owner)
		}
		next := "nothing pending"
		if t.NextReleaseAt != nil {
			if d := t.NextReleaseAt.Sub(r.At); d > 0 {
				next = "next release in " + human(d)
			} else {
				next = "next release now"
			}
		}
		overdue := fmt.Sprintf("%d overdue", t.OverduePartitions)
		if t.OverduePartitions > 0 {
			overdue += fmt.Sprintf(" (max %s)", human(time.Duration(t.MaxOverdueMS)*time.Millisecond))
		}
		fmt.Fprintf(tw, "%s\ttotal\t%d\t\t\t%s\t%s\t\t%s\t\n", t.Topic, t.Pending, next, overdue, retention(t.RetentionMS))
	}
	return tw.Flush()
}

// Empty reports whether every tier exists and holds nothing pending, with
// no open transaction and no partition that could not be read.
func (r *Report) Empty() bool {
	for _, t := range r.Tiers {
		if t.Missing || t.Pending > 0 {
			return false
		}
		for _, p := range t.Partitions {
			if p.Pending > 0 || p.Head != nil || p.OpenTransaction || p.Error != "" || p.Lost > 0 {
				return false
			}
		}
	}
	return len(r.Tiers) > 0
}

// count is "1 record", "2 records".
func count(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Line is the summary in one line.
func (s Summary) Line() string {
	overdue := fmt.Sprintf("%d overdue partitions", s.OverduePartitions)
	if s.OverduePartitions > 0 {
		overdue += fmt.Sprintf(" (max %s)", human(time.Duration(s.MaxOverdueMS)*time.Millisecond))
	}
	line := fmt.Sprintf("%d tiers, %d pending, %s, %d members, %d dead-lettered, %d warnings",
		s.Tiers, s.Pending, overdue, s.Members, s.DeadLetterRecords, s.Warnings)
	if s.OpenTransactions > 0 {
		line += fmt.Sprintf(", %d open transactions", s.OpenTransactions)
	}
	return line
}

func headStatus(h *Head) string {
	switch d := time.Duration(h.OverdueMS) * time.Millisecond; {
	case h.Error != "":
		return "bad headers: " + h.Error
	case d > 0:
		return "overdue " + human(d)
	default:
		return "held " + human(-d)
	}
}

func retention(ms int64) string {
	switch {
	case ms < 0:
		return "retention unlimited"
	case ms == 0:
		return "retention unknown"
	}
	return "retention " + tier.Readable(time.Duration(ms)*time.Millisecond)
}

// human rounds d for reading: milliseconds under a second, tenths of a
// second under a minute, whole seconds above.
func human(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
