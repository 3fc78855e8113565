package schedule_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/kafkaconf"
	"github.com/ladder/ladder/pkg/schedule"
	"github.com/ladder/ladder/pkg/tier"
)

// Schedule a message for topic work in 90 minutes and wait for the broker's
// acknowledgement. Send pipelines at high rates; ScheduleBatch sends a batch.
func ExampleScheduler_Schedule() {
	ladder, err := tier.Parse(tier.DefaultTiers, tier.DefaultPrefix)
	if err != nil {
		panic(err)
	}
	s, err := schedule.New(schedule.Config{
		Ladder: ladder,
		Kafka:  kafkaconf.Config{Brokers: []string{"127.0.0.1:9092"}, KafkaVersion: "3.0.0", ClientID: "checks"},
		Log:    zerolog.New(os.Stderr),
	})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := s.ScheduleReceipt(ctx, schedule.Message{Topic: "work", Key: []byte("order-42"), Value: []byte("hello"), Delay: 90 * time.Minute})
	if err != nil {
		panic(err)
	}
	fmt.Println("due", r.Due.Format(time.RFC3339), "via", r.Topic)
}

// Record builds the Kafka record that schedules a message, for callers with
// a producer of their own: the tier routing picks, the time it was built,
// and the ladder headers.
func ExampleRecord() {
	ladder, _ := tier.Parse(tier.DefaultTiers, tier.DefaultPrefix)
	now := time.UnixMilli(1796400000000)
	pm, err := schedule.Record(ladder, schedule.Message{Topic: "work", Value: []byte("hello"), Delay: 90 * time.Second}, now)
	if err != nil {
		panic(err)
	}
	fmt.Println(pm.Topic, pm.Timestamp.UnixMilli())
	for _, h := range pm.Headers {
		fmt.Printf("%s=%s\n", h.Key, h.Value)
	}
	_, err = schedule.Record(ladder, schedule.Message{Topic: "delay-1h", Delay: time.Minute}, now)
	fmt.Println(err)
	// Output:
	// delay-1m 1796400000000
	// ladder-target=work
	// ladder-due=1796400090000
	// ladder-scheduled=1796400000000
	// ladder-hops=0
	// invalid message: target delay-1h is a topic of the ladder itself
}
