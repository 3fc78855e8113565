package offsets_test

import (
	"context"
	"testing"

	"github.com/IBM/sarama"

	"github.com/ladder/ladder/pkg/laddertest"
	"github.com/ladder/ladder/pkg/offsets"
)

// inTxn writes keys to t/0 in one transaction, then commits or aborts it.
func inTxn(t *testing.T, addr string, p sarama.SyncProducer, commit bool, keys ...string) {
	t.Helper()
	if err := p.BeginTxn(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: "t", Key: sarama.StringEncoder(k), Value: sarama.StringEncoder("v")}); err != nil {
			t.Fatal(err)
		}
	}
	end := p.AbortTxn
	if commit {
		end = p.CommitTxn
	}
	if err := end(); err != nil {
		t.Fatal(err)
	}
	laddertest.WaitStable(t, addr, "t", 0) // Apache Kafka writes the marker after EndTxn returns
}

// TestReadRangeSkipsMarkersAndAborted builds a partition of plain records,
// committed and aborted transactions, and an open one, and reads ranges of
// it as a read_committed consumer: markers and aborted records are no
// records, the open transaction is beyond the last stable offset, and no
// read waits for a record that never comes.
func TestReadRangeSkipsMarkersAndAborted(t *testing.T) {
	b := laddertest.Broker(t, 1, "t")
	addr := b.Addr()
	plain := laddertest.Producer(t, addr)
	txn := laddertest.TxnProducer(t, addr, "records-test")
	open := laddertest.TxnProducer(t, addr, "records-test-open")

	send := func(k string) {
		if _, _, err := plain.SendMessage(&sarama.ProducerMessage{Topic: "t", Key: sarama.StringEncoder(k), Value: sarama.StringEncoder("v")}); err != nil {
			t.Fatal(err)
		}
	}
	send("a")                               // 0
	inTxn(t, addr, txn, true, "b", "c")     // 1, 2, commit marker 3
	inTxn(t, addr, txn, false, "x", "y")    // 4, 5, abort marker 6
	send("d")                               // 7
	inTxn(t, addr, txn, true, "e")          // 8, commit marker 9
	inTxn(t, addr, txn, false, "z")         // 10, abort marker 11
	if err := open.BeginTxn(); err != nil { // 12, open
		t.Fatal(err)
	}
	if _, _, err := open.SendMessage(&sarama.ProducerMessage{Topic: "t", Key: sarama.StringEncoder("o"), Value: sarama.StringEncoder("v")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { open.AbortTxn() })

	sc := sarama.NewConfig()
	sc.Version = sarama.V3_0_0_0
	client, err := sarama.NewClient([]string{addr}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const hw = 13
	ctx := context.Background()
	for _, tc := range []struct {
		from, to int64
		first    string // key of the first record; "" none
		firstAt  int64
		end      int64
		whatIsIt string
	}{
		{0, hw, "a", 0, 9, "everything: ends after e, before its marker"},
		{3, hw, "d", 7, 9, "from a commit marker: the aborted x, y and their marker are skipped"},
		{4, 7, "", 0, 4, "only aborted records and their marker"},
		{9, hw, "", 0, 9, "a marker, an aborted record, its marker, an open transaction"},
		{3, 4, "", 0, 3, "a marker alone"},
		{1, 3, "b", 1, 3, "inside a committed transaction"},
		{2, 8, "c", 2, 8, "cut at d"},
		{12, hw, "", 0, 12, "the open transaction alone"},
	} {
		r, err := offsets.ReadRange(ctx, client, "t", 0, tc.from, tc.to)
		if err != nil {
			t.Fatalf("[%d, %d): %v", tc.from, tc.to, err)
		}
		switch {
		case tc.first == "" && r.First != nil:
			t.Errorf("[%d, %d) %s: first %s at %d, want none", tc.from, tc.to, tc.whatIsIt, r.First.Key, r.First.Offset)
		case tc.first != "" && (r.First == nil || string(r.First.Key) != tc.first || r.First.Offset != tc.firstAt):
			t.Errorf("[%d, %d) %s: first %+v, want %s at %d", tc.from, tc.to, tc.whatIsIt, r.First, tc.first, tc.firstAt)
		}
		if tc.first != "" && r.End != tc.end {
			t.Errorf("[%d, %d) %s: records end at %d, want %d", tc.from, tc.to, tc.whatIsIt, r.End, tc.end)
		}
		if r.LastStable != 12 {
			t.Errorf("[%d, %d): last stable offset %d, want 12 (the open transaction)", tc.from, tc.to, r.LastStable)
		}
		m, err := offsets.FirstRecord(ctx, client, "t", 0, tc.from, tc.to)
		if err != nil || (m == nil) != (tc.first == "") || (m != nil && m.Offset != tc.firstAt) {
			t.Errorf("FirstRecord [%d, %d): %+v, %v", tc.from, tc.to, m, err)
		}
	}
}
