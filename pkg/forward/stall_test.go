package forward_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
)

// TestSlowPartitionDoesNotStallOthers: sarama fetches every partition of a
// broker in lockstep and waits until each partition's share of the last
// fetch was handed over. A tier partition with many records behind a head
// that is released slowly must not hold up the other partitions: records
// due in the smallest tier still arrive within its delay.
func TestSlowPartitionDoesNotStallOthers(t *testing.T) {
	e := setup(t, 2)
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewAsyncProducer([]string{e.addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go func() {
		for range p.Successes() {
		}
	}()

	// 1,500 records in delay-15s/0, entered so that one is released every
	// 20ms over 30 seconds, each due in an hour (so it goes round again).
	now := time.Now()
	later := strconv.FormatInt(now.Add(time.Hour).UnixMilli(), 10)
	for i := range 1500 {
		p.Input() <- &sarama.ProducerMessage{Topic: "delay-15s", Partition: 0, Key: sarama.StringEncoder(fmt.Sprint("slow-", i)),
			Value: sarama.StringEncoder("v"), Timestamp: now.Add(-15*time.Second + time.Duration(i)*20*time.Millisecond),
			Headers: []sarama.RecordHeader{header(envelope.Target, "work"), header(envelope.Due, later)}}
	}
	e.startForwarder(t)

	// Meanwhile, probes due 1.5s ahead through delay-1s, one every 250ms.
	const probes = 60
	for i := range probes {
		due := time.Now().Add(1500 * time.Millisecond)
		p.Input() <- &sarama.ProducerMessage{Topic: "delay-1s", Partition: int32(i % 2), Key: sarama.StringEncoder(fmt.Sprint("probe-", i)),
			Value: sarama.StringEncoder("v"), Headers: []sarama.RecordHeader{header(envelope.Target, "work"),
				header(envelope.Due, strconv.FormatInt(due.UnixMilli(), 10))}}
		time.Sleep(250 * time.Millisecond) // a steady trickle of probes is the load being tested
	}
	recs := e.work.WaitDistinct(t, probes, 60*time.Second)
	var lates []time.Duration
	for _, r := range recs {
		due, _ := strconv.ParseInt(r.Headers[envelope.Due], 10, 64)
		lates = append(lates, r.At.Sub(time.UnixMilli(due)))
	}
	slices.Sort(lates)
	worst := lates[len(lates)-1]
	if worst > 2*time.Second {
		t.Errorf("probes through delay-1s up to %s late (median %s) while delay-15s/0 drained slowly", worst, lates[len(lates)/2])
	}
	t.Logf("probe lateness median %s, worst %s", lates[len(lates)/2], worst)
}
