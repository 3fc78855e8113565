package laddertest

import (
	"testing"

	"github.com/IBM/sarama"
)

// MockCoordinator starts sarama's mock broker as a one-broker cluster: the
// controller, the leader of topic's partitions and the coordinator of
// group. more maps further request kinds (SetHandlerByMap's keys, such as
// "JoinGroupRequest") to their responses. For driving a state machine
// through a broker's answers deterministically, not for behaviour that
// crosses the wire (Broker is for that). Clients of it must set
// ApiVersionsRequest to false.
func MockCoordinator(tb testing.TB, group, topic string, partitions int32, more map[string]sarama.MockResponse) *sarama.MockBroker {
	tb.Helper()
	mb := sarama.NewMockBroker(tb, 1)
	tb.Cleanup(mb.Close)
	md := sarama.NewMockMetadataResponse(tb).SetBroker(mb.Addr(), mb.BrokerID()).SetController(mb.BrokerID())
	for p := range partitions {
		md.SetLeader(topic, p, mb.BrokerID())
	}
	handlers := map[string]sarama.MockResponse{
		"MetadataRequest":        md,
		"FindCoordinatorRequest": sarama.NewMockFindCoordinatorResponse(tb).SetCoordinator(sarama.CoordinatorGroup, group, mb),
	}
	for k, v := range more {
		handlers[k] = v
	}
	mb.SetHandlerByMap(handlers)
	return mb
}
