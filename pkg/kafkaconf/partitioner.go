package kafkaconf

import (
	"github.com/IBM/sarama"
)

// NewMurmur2Partitioner returns the partitioner of Kafka's Java client
// (murmur2 of the key, positive, modulo the partition count), so that a key
// lands on the same partition of a target topic whether ladder or a Java
// producer wrote it. Records without a key are spread at random.
func NewMurmur2Partitioner(topic string) sarama.Partitioner {
	return &murmur2Partitioner{random: sarama.NewRandomPartitioner(topic)}
}

type murmur2Partitioner struct {
	random sarama.Partitioner
}

func (p *murmur2Partitioner) Partition(msg *sarama.ProducerMessage, numPartitions int32) (int32, error) {
	if msg.Key == nil {
		return p.random.Partition(msg, numPartitions)
	}
	key, err := msg.Key.Encode()
	if err != nil {
		return -1, err
	}
	return int32(murmur2(key)&0x7fffffff) % numPartitions, nil
}

func (p *murmur2Partitioner) RequiresConsistency() bool { return true }

// murmur2 is org.apache.kafka.common.utils.Utils.murmur2.
func murmur2(data []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := length &^ 3
	switch length & 3 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
