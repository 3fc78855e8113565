package bench

import (
	"strings"
	"testing"
)

// TestAttribute checks how perf samples are attributed: each once, to the
// first part any of its frames belongs to, weighted by its period.
func TestAttribute(t *testing.T) {
	const script = `   3000000 
	           97c23 runtime.mallocgc
	          4614d0 github.com/IBM/sarama.(*RecordHeader).encode
	          426c9e github.com/IBM/sarama.(*ProduceRequest).encode
	          412150 github.com/IBM/sarama.(*asyncProducer).newBrokerProducer.func1

   1000000 
	           3912e runtime.scanblock
	           3391f runtime.gcBgMarkWorker

   1000000 
	ffffffff8224f5f9 _raw_spin_unlock_irqrestore
	           25333 runtime.parseUint
	          426c9e github.com/ladder/ladder/pkg/envelope.(*Decoder).Decode
	          426c9e github.com/ladder/ladder/pkg/forward.(*partition).process

   1000000 
	           12345 [unknown]
`
	p, err := attribute(strings.NewReader(script))
	if err != nil {
		t.Fatal(err)
	}
	if p.Samples != 4 || p.Seconds != 0.006 {
		t.Errorf("%d samples, %v s", p.Samples, p.Seconds)
	}
	got := map[string]float64{}
	for _, s := range append(p.Parts, p.Overlay...) {
		got[s.Part] = s.Percent
	}
	for part, want := range map[string]float64{
		"produce: encode request (sarama)": 50,
		"GC background mark":               100.0 / 6,
		"ladder headers: decode":           100.0 / 6,
		"other":                            100.0 / 6,
		"forwarder (pkg/forward, pkg/group: own code)": 0,
		"allocation (mallocgc, assists included)":      50,
		"GC (background mark and assists)":             100.0 / 6,
	} {
		if d := got[part] - want; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: %.3f%%, want %.3f%%", part, got[part], want)
		}
	}
	if _, err := attribute(strings.NewReader("nonsense\n")); err == nil {
		t.Error("a malformed sample line accepted")
	}
}
