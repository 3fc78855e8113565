package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
)

// copyConfigs returns the configurations of the sarama copies: ladder's
// producer (acks=all, idempotent, one request in flight, murmur2) and its
// consumer with the forwarder's fetch size, buffers and isolation level.
func copyConfigs(env *Env) (pc, cc *sarama.Config, err error) {
	if pc, err = env.Kafka.Producer(); err != nil {
		return nil, nil, err
	}
	if cc, err = env.Kafka.Consumer(); err != nil {
		return nil, nil, err
	}
	// As pkg/forward sets them.
	cc.Consumer.Fetch.Default = 256 << 10
	cc.ChannelBufferSize = 256
	cc.Consumer.IsolationLevel = sarama.ReadCommitted
	return pc, cc, nil
}

// copyMessage is m as the sarama copies produce it to dst: its key, value
// and headers, stamped now, with meta for the acknowledgement.
func copyMessage(m *sarama.ConsumerMessage, dst string, meta any) *sarama.ProducerMessage {
	hdrs := make([]sarama.RecordHeader, 0, len(m.Headers))
	for _, hd := range m.Headers {
		hdrs = append(hdrs, *hd)
	}
	return &sarama.ProducerMessage{Topic: dst, Key: sarama.ByteEncoder(m.Key), Value: sarama.ByteEncoder(m.Value),
		Headers: hdrs, Timestamp: time.Now(), Metadata: meta}
}

// startSaramaCopy runs BaselineSarama: a sarama partition consumer on every
// partition of src, from the oldest offset, feeding one async producer
// configured as ladder's (acks=all, idempotent, one request in flight,
// murmur2), with the forwarder's fetch size and buffers. No group, no
// commits: what a sarama forwarder could reach at most.
func startSaramaCopy(ctx context.Context, env *Env, src, dst string) (*running, error) {
	pc, cc, err := copyConfigs(env)
	if err != nil {
		return nil, err
	}
	brokers := env.Kafka.BrokerList()
	producer, err := sarama.NewAsyncProducer(brokers, pc)
	if err != nil {
		return nil, fmt.Errorf("raw sarama copy producer: %w", err)
	}
	consumer, err := sarama.NewConsumer(brokers, cc)
	if err != nil {
		producer.Close()
		return nil, fmt.Errorf("raw sarama copy consumer: %w", err)
	}
	parts, err := consumer.Partitions(src)
	if err != nil {
		consumer.Close()
		producer.Close()
		return nil, fmt.Errorf("raw sarama copy: partitions of %s: %w", src, err)
	}
	var acks sync.WaitGroup
	acks.Go(func() {
		for range producer.Successes() {
		}
	})
	acks.Go(func() {
		for pe := range producer.Errors() {
			env.Log.Warn().Err(pe.Err).Msg("raw sarama copy: produce failed")
		}
	})
	var (
		pcs   []sarama.PartitionConsumer
		feeds sync.WaitGroup
	)
	stop := make(chan struct{})
	closeAll := func() {
		close(stop)
		for _, p := range pcs {
			p.AsyncClose()
		}
		feeds.Wait()
		consumer.Close()
		producer.AsyncClose()
		acks.Wait()
	}
	for _, p := range parts {
		part, err := consumer.ConsumePartition(src, p, sarama.OffsetOldest)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("raw sarama copy: consuming %s/%d: %w", src, p, err)
		}
		pcs = append(pcs, part)
		feeds.Go(func() {
			for {
				select {
				case m, ok := <-part.Messages():
					if !ok {
						return
					}
					select {
					case producer.Input() <- copyMessage(m, dst, nil):
					case <-stop:
						return
					}
				case <-stop:
					return
				}
			}
		})
	}
	var once sync.Once
	return &running{stop: func() error { once.Do(closeAll); return nil }}, nil
}

// startKgoCopy runs BaselineKgo: one franz-go client consuming every
// partition of src from the start (no group, no commits) and producing
// each record, key, value and headers, to dst with franz-go's producer
// defaults (idempotent, acks=all, 10 ms linger, up to 1 MB batches) but no
// compression, like the others. The broker's practical limit for a Go
// client on this machine.
func startKgoCopy(ctx context.Context, env *Env, src, dst string) (*running, error) {
	cl, err := newKgo(env, kgo.ConsumeTopics(src), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var warned sync.Once
	promise := func(_ *kgo.Record, err error) {
		if err != nil && runCtx.Err() == nil {
			warned.Do(func() { env.Log.Warn().Err(err).Msg("raw kgo copy: produce failed") })
		}
	}
	go func() {
		defer close(done)
		for runCtx.Err() == nil {
			fetches := cl.PollFetches(runCtx)
			fetches.EachError(func(t string, p int32, err error) {
				if !errors.Is(err, context.Canceled) {
					env.Log.Warn().Err(err).Str("topic", t).Int32("partition", p).Msg("raw kgo copy: fetch failed")
				}
			})
			fetches.EachRecord(func(r *kgo.Record) {
				cl.Produce(runCtx, &kgo.Record{Topic: dst, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: time.Now()}, promise)
			})
		}
	}()
	var once sync.Once
	return &running{stop: func() error {
		once.Do(func() {
			cancel()
			<-done
			cl.Close()
		})
		return nil
	}}, nil
}
