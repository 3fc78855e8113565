package topics

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/rs/zerolog"

	"github.com/ladder/ladder/pkg/kafkaconf"
)

// Admin compares specs with a cluster and applies them, through sarama's
// ClusterAdmin.
type Admin struct {
	admin       sarama.ClusterAdmin
	conf        *sarama.Config // for connections to each broker (settle)
	incremental bool           // IncrementalAlterConfigs (Kafka 2.3+), else AlterConfigs with the full set
	log         zerolog.Logger
	// Settle bounds how long Apply waits for the cluster to report what it
	// did (default 30s).
	Settle time.Duration
}

// NewAdmin connects to the cluster of k.
func NewAdmin(k kafkaconf.Config, log zerolog.Logger) (*Admin, error) {
	sc, err := k.Base()
	if err != nil {
		return nil, err
	}
	sc.Admin.Timeout = 30 * time.Second
	admin, err := sarama.NewClusterAdmin(k.BrokerList(), sc)
	if err != nil {
		return nil, kafkaconf.Explain(fmt.Errorf("connecting admin client: %w", err), k.BrokerList())
	}
	return &Admin{admin: admin, conf: sc, incremental: sc.Version.IsAtLeast(sarama.V2_3_0_0), log: log, Settle: 30 * time.Second}, nil
}

// Close disconnects.
func (a *Admin) Close() error { return a.admin.Close() }

// ErrBlocked is returned (wrapped) by Apply for a plan it cannot carry out
// in full: it then changes nothing. The message names every reason.
var ErrBlocked = errors.New("the plan cannot be fully applied, so nothing was changed")

// Plan compares the spec with the cluster, and lists in Blocked the changes
// the cluster cannot take.
func (a *Admin) Plan(ctx context.Context, s *Spec) (*Plan, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	brokers, _, err := a.admin.DescribeCluster()
	if err != nil {
		return nil, fmt.Errorf("describing the cluster: %w", err)
	}
	all, err := a.admin.DescribeTopics(nil)
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	byName := map[string]*sarama.TopicMetadata{}
	var existing []string
	for _, md := range all {
		if md.Err != sarama.ErrNoError || md.IsInternal {
			continue
		}
		byName[md.Name] = md
		existing = append(existing, md.Name)
	}
	observed := map[string]Observed{}
	var resources []*sarama.ConfigResource
	for _, t := range s.Topics() {
		md, ok := byName[t.Name]
		if !ok {
			continue
		}
		o := Observed{Name: t.Name, Partitions: int32(len(md.Partitions)), Configs: map[string]string{}, Effective: map[string]string{}}
		for _, p := range md.Partitions {
			o.ReplicationFactor = max(o.ReplicationFactor, int16(len(p.Replicas)))
		}
		observed[t.Name] = o
		resources = append(resources, &sarama.ConfigResource{Type: sarama.TopicResource, Name: t.Name})
	}
	if len(resources) > 0 {
		results, err := a.admin.DescribeConfigs(resources, sarama.DescribeConfigsOptions{})
		if err != nil {
			return nil, fmt.Errorf("describing topic configs: %w", err)
		}
		for _, r := range results {
			if !errors.Is(r.ErrorCode, sarama.ErrNoError) {
				return nil, fmt.Errorf("describing configs of topic %s: %w %s", r.Name, r.ErrorCode, r.ErrorMsg)
			}
			o, ok := observed[r.Name]
			if !ok {
				continue
			}
			for _, c := range r.Configs {
				if c.Sensitive {
					continue
				}
				o.Effective[c.Name] = c.Value
				if c.Source == sarama.SourceTopic {
					o.Configs[c.Name] = c.Value
				}
			}
		}
	}
	p := Diff(s, observed, existing)
	p.observed = observed
	p.check(len(brokers))
	return p, nil
}

// Apply makes the changes of p (from Plan): it creates the missing topics,
// raises partition counts and sets configs. It never deletes a topic,
// shrinks one or removes a config. It checks everything first: with any
// change Blocked, or refused by the cluster in a validate-only run of every
// request, it changes nothing and returns ErrBlocked. Then it waits (up to
// Settle) until the cluster reports every change, and returns the plan it
// sees then, whose WillNot lists what is left to the operator.
func (a *Admin) Apply(ctx context.Context, s *Spec, p *Plan) (*Plan, error) {
	if len(p.Blocked) > 0 {
		reasons := make([]string, len(p.Blocked))
		for i, r := range p.Blocked {
			reasons[i] = "  - " + r.Topic + ": " + r.Reason
		}
		return nil, fmt.Errorf("%w:\n%s", ErrBlocked, strings.Join(reasons, "\n"))
	}
	if err := a.apply(ctx, p, true); err != nil {
		return nil, fmt.Errorf("%w: the cluster refuses:\n%w", ErrBlocked, err)
	}
	if err := a.apply(ctx, p, false); err != nil {
		return nil, err
	}
	return a.settle(ctx, s)
}

// apply sends every change of p, or with validateOnly asks the cluster
// whether it would take each one without making it. It returns every error.
func (a *Admin) apply(ctx context.Context, p *Plan, validateOnly bool) error {
	var errs []error
	for _, t := range p.Create {
		if err := ctx.Err(); err != nil {
			return err
		}
		entries := map[string]*string{}
		for k, v := range t.Configs {
			entries[k] = &v
		}
		err := a.admin.CreateTopic(t.Name, &sarama.TopicDetail{
			NumPartitions: t.Partitions, ReplicationFactor: t.ReplicationFactor, ConfigEntries: entries}, validateOnly)
		switch {
		case errors.Is(err, sarama.ErrTopicAlreadyExists) && validateOnly:
		case errors.Is(err, sarama.ErrTopicAlreadyExists):
			// Created meanwhile (another provisioning job): the next plan compares it.
			a.log.Warn().Str("topic", t.Name).Msg("topic was created by someone else meanwhile")
		case err != nil:
			errs = append(errs, fmt.Errorf("creating topic %s (%d partitions, replication factor %d): %w",
				t.Name, t.Partitions, t.ReplicationFactor, err))
		case !validateOnly:
			a.log.Info().Str("topic", t.Name).Int32("partitions", t.Partitions).
				Int16("replication_factor", t.ReplicationFactor).Msg("created topic")
		}
	}
	for _, c := range p.Partitions {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := a.admin.CreatePartitions(c.Topic, c.To, nil, validateOnly); err != nil {
			errs = append(errs, fmt.Errorf("raising partitions of %s from %d to %d: %w", c.Topic, c.From, c.To, err))
			continue
		}
		if !validateOnly {
			a.log.Info().Str("topic", c.Topic).Int32("from", c.From).Int32("to", c.To).Msg("added partitions")
		}
	}
	byTopic := map[string][]ConfigChange{}
	for _, c := range p.Configs {
		byTopic[c.Topic] = append(byTopic[c.Topic], c)
	}
	for _, topic := range slices.Sorted(maps.Keys(byTopic)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := a.setConfigs(topic, byTopic[topic], p.observed[topic], validateOnly); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, c := range byTopic[topic] {
			if !validateOnly {
				a.log.Info().Str("topic", topic).Str("config", c.Name).Str("from", c.From).Str("to", c.To).Msg("set config")
			}
		}
	}
	return errors.Join(errs...)
}

// setConfigs sets changes on topic. Without IncrementalAlterConfigs, the
// whole set of topic-level configs is sent (AlterConfigs replaces it), the
// ones already set included, so none is lost.
func (a *Admin) setConfigs(topic string, changes []ConfigChange, o Observed, validateOnly bool) error {
	if a.incremental {
		entries := map[string]sarama.IncrementalAlterConfigsEntry{}
		for _, c := range changes {
			v := c.To
			entries[c.Name] = sarama.IncrementalAlterConfigsEntry{Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v}
		}
		if err := a.admin.IncrementalAlterConfig(sarama.TopicResource, topic, entries, validateOnly); err != nil {
			return fmt.Errorf("setting configs of %s: %w", topic, err)
		}
		return nil
	}
	full := map[string]*string{}
	for k, v := range o.Configs {
		full[k] = &v
	}
	for _, c := range changes {
		v := c.To
		full[c.Name] = &v
	}
	if err := a.admin.AlterConfig(sarama.TopicResource, topic, full, validateOnly); err != nil {
		return fmt.Errorf("setting configs of %s: %w", topic, err)
	}
	return nil
}

// settle re-plans until the cluster reports no change left to make, and
// every broker knows every topic of the spec, or Settle passes. Metadata
// takes a moment to reach every broker: a topic just created can be listed
// by one broker and unknown to the one that answers DescribeConfigs
// (UNKNOWN_TOPIC_OR_PARTITION on Apache Kafka with three nodes), or to the
// one the next client (verify, a forwarder) asks, so that error is waited
// out like a change not yet shown.
func (a *Admin) settle(ctx context.Context, s *Spec) (*Plan, error) {
	deadline := time.Now().Add(a.Settle)
	for {
		p, err := a.Plan(ctx, s)
		if err == nil && p.Changes() == 0 {
			err = a.knownEverywhere(ctx, s)
		}
		switch {
		case err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition):
			return nil, err
		case err != nil && time.Now().After(deadline):
			return nil, fmt.Errorf("after %s: %w", a.Settle, err)
		case err != nil:
		case p.Changes() == 0:
			return p, nil
		case time.Now().After(deadline):
			return p, fmt.Errorf("after %s the cluster still differs from the spec: %v", a.Settle, p.Drift())
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// knownEverywhere asks every broker of the cluster for the metadata of the
// spec's topics; it returns an error wrapping UNKNOWN_TOPIC_OR_PARTITION
// while some broker does not know one yet. A broker that cannot be reached
// or does not answer within brokerCheckTimeout is skipped (with a warning):
// it learns the metadata when it is back.
func (a *Admin) knownEverywhere(ctx context.Context, s *Spec) error {
	names := make([]string, 0, len(s.Topics()))
	for _, t := range s.Topics() {
		names = append(names, t.Name)
	}
	brokers, _, err := a.admin.DescribeCluster()
	if err != nil {
		return fmt.Errorf("describing the cluster: %w", err)
	}
	for _, b := range brokers {
		if err := ctx.Err(); err != nil {
			return err
		}
		md, err := a.brokerMetadata(b, names)
		if err != nil {
			a.log.Warn().Err(err).Msg("not checking that this broker knows the topics: clients that reach it may not see them yet")
			continue
		}
		for _, t := range md.Topics {
			if !errors.Is(t.Err, sarama.ErrNoError) {
				return fmt.Errorf("broker %d (%s) on topic %s: %w", b.ID(), b.Addr(), t.Name, t.Err)
			}
		}
	}
	return nil
}

// brokerCheckTimeout bounds connecting to one broker and its answer when
// checking it knows the topics.
const brokerCheckTimeout = 5 * time.Second

// brokerMetadata asks broker b, on a connection of its own, for the
// metadata of topics.
func (a *Admin) brokerMetadata(b *sarama.Broker, topics []string) (*sarama.MetadataResponse, error) {
	conf := *a.conf
	conf.Net.DialTimeout = min(conf.Net.DialTimeout, brokerCheckTimeout)
	conf.Net.ReadTimeout = min(conf.Net.ReadTimeout, brokerCheckTimeout)
	conf.Net.WriteTimeout = min(conf.Net.WriteTimeout, brokerCheckTimeout)
	if err := b.Open(&conf); err != nil && !errors.Is(err, sarama.ErrAlreadyConnected) {
		return nil, fmt.Errorf("connecting to broker %d (%s): %w", b.ID(), b.Addr(), err)
	}
	defer b.Close()
	md, err := b.GetMetadata(sarama.NewMetadataRequest(a.conf.Version, topics))
	if err != nil {
		return nil, fmt.Errorf("reading metadata from broker %d (%s): %w", b.ID(), b.Addr(), err)
	}
	return md, nil
}
