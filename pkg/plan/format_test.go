package plan

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// jsonKeys lists the dotted paths of every key in v's JSON.
func jsonKeys(tb testing.TB, v any) []string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	var m any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	var keys []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				keys = append(keys, prefix+k)
				if _, list := x.([]any); list {
					walk(prefix+k, x)
				} else {
					walk(prefix+k+".", x)
				}
			}
		case []any:
			if len(v) > 0 {
				walk(prefix+"[].", v[0])
			}
		}
	}
	walk("", m)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// TestPlanJSONFields: the JSON of a plan keeps these names; scripts read them.
func TestPlanJSONFields(t *testing.T) {
	p, err := Compute(defaultLadder(t), Workload{Pending: 1000, ValueBytes: 100, Delays: mustDelays(t, "90s")})
	if err != nil {
		t.Fatal(err)
	}
	tierFields := "delay_seconds,arrival_rate,stored_records,record_bytes,stored_bytes,hops_per_message," +
		"write_amplification,write_bytes_per_second,delivered_share,lateness,lateness.mean_seconds," +
		"lateness.p50_seconds,lateness.p99_seconds,lateness.max_seconds,partitions,tier,topic"
	var want []string
	for _, f := range strings.Split(tierFields, ",") {
		want = append(want, "per_tier[]."+f, "target."+f)
	}
	want = append(want, "per_tier", "target", "tiers", "workload", "total")
	for _, f := range strings.Split("pending,value_bytes,key_bytes,target,delays,mean_delay_seconds,max_delay_seconds,"+
		"batch_records,partition_rate,replication,lag_seconds", ",") {
		want = append(want, "workload."+f)
	}
	for _, f := range strings.Split("delivery_rate,stored_records,stored_bytes,mean_hops,max_hops,write_amplification,"+
		"write_bytes_per_second,lateness,lateness.mean_seconds,lateness.p50_seconds,lateness.p99_seconds,"+
		"lateness.max_seconds,worst_lateness_seconds,partitions", ",") {
		want = append(want, "total."+f)
	}
	slices.Sort(want)
	if got := jsonKeys(t, p); !slices.Equal(got, want) {
		t.Errorf("JSON keys changed:\n got %v\nwant %v", got, want)
	}
}

func TestWriteTable(t *testing.T) {
	p, err := Compute(defaultLadder(t), Workload{Pending: 50_000_000, ValueBytes: 100, Delays: mustDelays(t, "5m:0.5,30m:0.3,2h:0.2")})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteTable(&b, p); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"workload: 50,000,000 pending messages of 100 B",
		"delay-1m", "delay-6h", "target", "total",
		"summary: 23.5k msg/s scheduled and delivered; 3.50 hops per message (max 5)",
		"worst 1m00s (smallest tier 1m + lag 0s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{fmtCount(0), "0"}, {fmtCount(7), "7"}, {fmtCount(23_474.6), "23.5k"}, {fmtCount(9_375_000), "9.38M"},
		{fmtCount(156_000), "156k"}, {fmtBytes(199.4), "199 B"}, {fmtBytes(29.8e9), "29.8 GB"},
		{fmtSeconds(0), "0s"}, {fmtSeconds(0.25), "250ms"}, {fmtSeconds(29.96), "30.0s"}, {fmtSeconds(59.97), "1m00s"},
		{fmtSeconds(2130), "35m30s"}, {fmtSeconds(9000), "2h30m"}, {fmtSeconds(302400), "3d12h"},
		{fmtPercent(1), "100%"}, {fmtPercent(0.5), "50.0%"}, {fmtPercent(0.0001), "0.010%"},
		{groupThousands(50_000_000), "50,000,000"}, {groupThousands(-1234), "-1,234"}, {groupThousands(12), "12"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
