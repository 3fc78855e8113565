package tier

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ladder/ladder/pkg/internal/vectors"
)

// tierVectors is testdata/ladders.json: the tier rules that pkg/python's tests
// run too (tests/test_vectors.py).
type tierVectors struct {
	Comment string          `json:"comment"`
	Parse   []parseVector   `json:"parse"`
	Labels  []labelVector   `json:"labels"`
	Topics  []topicVector   `json:"topics"`
	Routes  []routeVector   `json:"routes"`
	Release []releaseVector `json:"release_at"`
}

type parseVector struct {
	Tiers  string `json:"tiers"`
	Prefix string `json:"prefix"`
	// Expected: the ladder, or the error.
	Topics      []string `json:"topics,omitempty"`
	DelaysMs    []int64  `json:"delays_ms,omitempty"`
	String      string   `json:"string,omitempty"`
	DLQ         string   `json:"dlq,omitempty"`
	Control     string   `json:"control,omitempty"`
	Error       string   `json:"error,omitempty"`
	InvalidSpec bool     `json:"invalid_spec,omitempty"`
}

type labelVector struct {
	Ms    int64  `json:"ms"`
	Label string `json:"label"`
}

type topicVector struct {
	Name  string `json:"name"`
	Error string `json:"error"`
}

type routeVector struct {
	Tiers  string `json:"tiers"`
	Prefix string `json:"prefix"`
	NowMs  int64  `json:"now_ms"`
	Route  []struct {
		RemainingMs int64  `json:"remaining_ms"`
		Next        string `json:"next"` // "" = due: to the target
	} `json:"route"`
	Hops []struct {
		DelayMs int64 `json:"delay_ms"`
		Hops    int   `json:"hops"`
	} `json:"hops"`
}

type releaseVector struct {
	DelayMs   int64  `json:"delay_ms"`
	EnteredMs int64  `json:"entered_ms"`
	DueMs     *int64 `json:"due_ms"` // null: no ladder-due
	ReleaseMs int64  `json:"release_ms"`
}

const tierVectorsFile = "testdata/ladders.json"

// TestVectors runs the shared tier vectors: parsing (topics, delays, errors),
// labels, topic names, routes and hop counts on several ladders, release times.
func TestVectors(t *testing.T) {
	var v tierVectors
	vectors.Load(t, tierVectorsFile, &v)
	for i := range v.Parse {
		c := &v.Parse[i]
		what := fmt.Sprintf("Parse(%q, %q)", c.Tiers, c.Prefix)
		l, err := Parse(c.Tiers, c.Prefix)
		var got parseVector
		got.Tiers, got.Prefix = c.Tiers, c.Prefix
		if err != nil {
			got.Error, got.InvalidSpec = err.Error(), errors.Is(err, ErrInvalidSpec)
		} else {
			got.Topics, got.String, got.DLQ, got.Control = l.Topics(), l.String(), l.DLQTopic(), l.ControlTopic()
			for _, tr := range l.Tiers() {
				got.DelaysMs = append(got.DelaysMs, tr.Delay.Milliseconds())
			}
		}
		vectors.CheckJSON(t, what, c, got)
	}
	for i := range v.Labels {
		c := &v.Labels[i]
		vectors.Check(t, fmt.Sprintf("Label(%dms)", c.Ms), &c.Label, Label(time.Duration(c.Ms)*time.Millisecond))
	}
	for i := range v.Topics {
		c := &v.Topics[i]
		got := ""
		if err := ValidateTopic(c.Name); err != nil {
			got = err.Error()
		}
		vectors.Check(t, fmt.Sprintf("ValidateTopic(%q)", c.Name), &c.Error, got)
	}
	for i := range v.Routes {
		c := &v.Routes[i]
		l, err := Parse(c.Tiers, c.Prefix)
		if err != nil {
			t.Fatalf("routes: Parse(%q): %v", c.Tiers, err)
		}
		now := time.UnixMilli(c.NowMs)
		for j := range c.Route {
			r := &c.Route[j]
			next, ok := l.Route(now, now.Add(time.Duration(r.RemainingMs)*time.Millisecond))
			got := ""
			if ok {
				got = next.Topic
			}
			vectors.Check(t, fmt.Sprintf("%s: Route(remaining=%dms)", c.Tiers, r.RemainingMs), &r.Next, got)
		}
		for j := range c.Hops {
			h := &c.Hops[j]
			vectors.Check(t, fmt.Sprintf("%s: Hops(%dms)", c.Tiers, h.DelayMs), &h.Hops, l.Hops(time.Duration(h.DelayMs)*time.Millisecond))
		}
	}
	for i := range v.Release {
		c := &v.Release[i]
		var due time.Time
		if c.DueMs != nil {
			due = time.UnixMilli(*c.DueMs)
		}
		got := ReleaseAt(Tier{Delay: time.Duration(c.DelayMs) * time.Millisecond}, time.UnixMilli(c.EnteredMs), due)
		vectors.Check(t, fmt.Sprintf("ReleaseAt(%+v)", *c), &c.ReleaseMs, got.UnixMilli())
	}
	vectors.Save(t, tierVectorsFile, &v)
}
