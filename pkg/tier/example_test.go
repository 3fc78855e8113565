package tier_test

import (
	"fmt"
	"time"

	"github.com/ladder/ladder/pkg/tier"
)

// A message due in 90 minutes enters the 1h tier, the largest that fits;
// one due in 30 seconds enters the 1m tier, the smallest, which releases it
// at its due time; one already due goes straight to its target.
func ExampleLadder_Route() {
	ladder, err := tier.Parse(tier.DefaultTiers, tier.DefaultPrefix)
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 11, 24, 17, 0, 0, 0, time.UTC)
	for _, in := range []time.Duration{90 * time.Minute, 30 * time.Second, 0} {
		if next, ok := ladder.Route(now, now.Add(in)); ok {
			fmt.Printf("due in %-8s -> %s\n", in, next.Topic)
		} else {
			fmt.Printf("due in %-8s -> the target\n", in)
		}
	}
	// Output:
	// due in 1h30m0s  -> delay-1h
	// due in 30s      -> delay-1m
	// due in 0s       -> the target
}

// Hops on the default ladder: any delay below the largest tier takes at most
// 23 hops (14 × 1m + 3 × 15m + 5 × 1h + 1); a longer one adds one hop per 6
// hours. Each hop is one produce and one consume of the record. `ladder plan
// --suggest` finds tier sets with fewer hops for a workload.
func ExampleLadder_Hops() {
	ladder, err := tier.Parse("1m,15m,1h,6h", "delay-")
	if err != nil {
		panic(err)
	}
	for _, d := range []string{"30s", "1m", "5m", "14m59s", "15m", "59m59s", "1h", "5h59m59s", "6h", "24h", "168h"} {
		delay, _ := time.ParseDuration(d)
		fmt.Printf("%-9s %2d\n", d, ladder.Hops(delay))
	}
	// Output:
	// 30s        1
	// 1m         1
	// 5m         5
	// 14m59s    15
	// 15m        1
	// 59m59s    18
	// 1h         1
	// 5h59m59s  23
	// 6h         1
	// 24h        4
	// 168h      28
}

// Tier topics are the prefix plus the delay in its shortest exact unit; the
// dead-letter and control topics are the prefix plus dlq and control.
func ExampleParse() {
	ladder, err := tier.Parse("90s,15m,2d", "delay-")
	if err != nil {
		panic(err)
	}
	fmt.Println(ladder.Topics(), ladder.DLQTopic(), ladder.ControlTopic())
	fmt.Println("lateness bound:", ladder.Smallest().Label())
	_, err = tier.Parse("1m,60s", "delay-")
	fmt.Println(err)
	// Output:
	// [delay-90s delay-15m delay-2d] delay-dlq delay-control
	// lateness bound: 90s
	// invalid tier list: delay 1m appears twice
}

// A tier releases its head at the end of the tier delay, or at its due time
// if that comes first.
func ExampleReleaseAt() {
	ladder, _ := tier.Parse(tier.DefaultTiers, tier.DefaultPrefix)
	oneMinute := ladder.Smallest()
	entered := time.Date(2026, 11, 24, 17, 0, 0, 0, time.UTC)
	fmt.Println(tier.ReleaseAt(oneMinute, entered, time.Time{}).Format(time.TimeOnly))
	fmt.Println(tier.ReleaseAt(oneMinute, entered, entered.Add(20*time.Second)).Format(time.TimeOnly))
	// Output:
	// 17:01:00
	// 17:00:20
}
