package envelope_test

import (
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/envelope"
)

// The headers that schedule a message, after the caller's own: a caller
// header named like a ladder header is dropped, the contract's value wins.
func ExampleNew() {
	scheduled := time.UnixMilli(1796400000000)
	own := []sarama.RecordHeader{{Key: []byte("trace-id"), Value: []byte("abc123")}, {Key: []byte("ladder-hops"), Value: []byte("7")}}
	for _, h := range envelope.New("work", scheduled.Add(90*time.Second), scheduled, own) {
		fmt.Printf("%s=%s\n", h.Key, h.Value)
	}
	// Output:
	// trace-id=abc123
	// ladder-target=work
	// ladder-due=1796400090000
	// ladder-scheduled=1796400000000
	// ladder-hops=0
}

// Decode reads the ladder headers of a consumed record; headers it cannot
// use are a *HeaderError whose Reason is the dead-letter reason.
func ExampleDecode() {
	header := func(k, v string) *sarama.RecordHeader { return &sarama.RecordHeader{Key: []byte(k), Value: []byte(v)} }
	env, err := envelope.Decode([]*sarama.RecordHeader{header("ladder-target", "work"), header("ladder-due", "1796400090000"), header("ladder-hops", "2")})
	fmt.Println(env.Target, env.Due.UnixMilli(), env.Hops, err)

	_, err = envelope.Decode([]*sarama.RecordHeader{header("ladder-target", "work"), header("ladder-due", "1796400090")})
	fmt.Printf("%s: %v\n", envelope.ReasonOf(err), err)

	_, err = envelope.Decode([]*sarama.RecordHeader{header("trace-id", "abc123")})
	fmt.Printf("%s: %v\n", envelope.ReasonOf(err), err)
	// Output:
	// work 1796400090000 2 <nil>
	// invalid_due: ladder-due: 1796400090 is before 1973: ladder-due is unix milliseconds, not seconds
	// missing_target: ladder-target: header is missing
}
