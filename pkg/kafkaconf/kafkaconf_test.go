package kafkaconf

import (
	"errors"
	"strings"
	"testing"

	"github.com/IBM/sarama"
)

// TestMurmur2MatchesJava uses the vectors of Kafka's UtilsTest.testMurmur2.
func TestMurmur2MatchesJava(t *testing.T) {
	for in, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		if got := int32(murmur2([]byte(in))); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
	p := NewMurmur2Partitioner("t")
	got, err := p.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder("foobar")}, 12)
	foobar := int32(-790332482)
	if want := (foobar & 0x7fffffff) % 12; err != nil || got != want {
		t.Errorf("partition of foobar = %d, %v", got, err)
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Brokers: []string{"127.0.0.1:9092", " kafka-1:9093"}, KafkaVersion: "3.6.0", ClientID: "ladder"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for name, c := range map[string]Config{
		"LADDER_BROKERS":       {Brokers: []string{"no-port"}, KafkaVersion: "3.0.0", ClientID: "x"},
		"LADDER_KAFKA_VERSION": {Brokers: []string{"h:1"}, KafkaVersion: "three", ClientID: "x"},
		"LADDER_CLIENT_ID":     {Brokers: []string{"h:1"}, KafkaVersion: "3.0.0"},
	} {
		err := c.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Var != name || !strings.Contains(err.Error(), "accepted:") {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if got := ok.BrokerList(); got[1] != "kafka-1:9093" {
		t.Errorf("BrokerList = %q", got)
	}
}
