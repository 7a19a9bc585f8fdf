package projector

import (
	"context"
	"errors"
	"net/http"
	"time"

	"orderflow/internal/httpserver"
	"orderflow/internal/kafka"
)

// waitForTopic waits until the source topic exists. The projector does not create it: capture
// owns its partition count, and a consumer group that joined a missing topic would hold no
// partitions until the next rebalance.
func (p *Projector) waitForTopic(ctx context.Context) error {
	logged := false
	for {
		n, err := kafka.PartitionCount(ctx, p.client, p.cfg.Topic)
		if err == nil && n > 0 {
			return nil
		}
		if !logged {
			p.log.Info("waiting for the topic to exist", "topic", p.cfg.Topic, "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// watchHealth keeps the readiness flags and the consumer lag current, also while no events
// flow or while the projector is stuck: lag must grow when nothing is consumed.
func (p *Projector) watchHealth(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		p.dbOK.Store(p.store.Ping(pctx) == nil)
		// The partition count comes from kafka-go's metadata cache; the probe is a round trip
		// with a deadline of its own, so a silent broker shows.
		p.probe.Once(ctx)
		n, err := kafka.PartitionCount(pctx, p.client, p.cfg.Topic)
		p.kafkaOK.Store(err == nil && n > 0 && p.probe.Err() == nil)
		if err == nil && n > 0 {
			if _, err := p.lag.Refresh(pctx); err != nil {
				p.log.Debug("measuring consumer lag", "err", err)
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Ready reports whether the last checks reached both the database and Kafka and the group has
// given this projector partitions: before that, an order committed now would wait for the
// group's join, so the projector is not yet doing its job.
func (p *Projector) Ready() bool {
	return p.dbOK.Load() && p.kafkaOK.Load() && p.assigned.Partitions() > 0
}

func (p *Projector) dependencyUp(dep string) bool {
	if dep == dependencyKafka {
		return p.kafkaOK.Load()
	}
	return p.dbOK.Load()
}

var (
	errDatabaseAway = errors.New("database unavailable; retrying")
	errKafkaAway    = errors.New("kafka unavailable; retrying")
	errUnassigned   = errors.New("no partitions assigned yet (joining the consumer group)")
)

// Handler serves /healthz (the process is up), /readyz (the last checks reached PostgreSQL
// and Kafka, and the group gave this projector partitions) and /metrics.
func (p *Projector) Handler() http.Handler {
	return httpserver.OpsHandler(p.metrics.registry, func(context.Context) error {
		// /readyz says what is away, not the driver's error, which may name hosts and users.
		switch {
		case !p.dbOK.Load():
			return errDatabaseAway
		case !p.kafkaOK.Load():
			return errKafkaAway
		case p.assigned.Partitions() == 0:
			return errUnassigned
		}
		return nil
	}, nil)
}
