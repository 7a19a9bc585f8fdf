// Package eventtrace finds where one event is in the pipeline (orderflow trace EVENT_ID): its
// outbox row, its record on the topic, the read model of its order, each webhook delivery and
// attempt, and the partner's receipt. It only reads: the database through a small interface,
// the topic directly without a consumer group.
package eventtrace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"
	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/internal/kafka"
)

// DefaultMaxScan is how many records per partition a search reads at most.
const DefaultMaxScan = 100_000

// store is what a trace needs of the database (postgres.DB is one).
type store interface {
	TraceEvent(ctx context.Context, eventID string) (orderflow.EventTrace, error)
	TraceOrder(ctx context.Context, orderID string) (orderflow.OrderTrace, error)
}

// Config says where to look.
type Config struct {
	Brokers []string
	Topic   string
	// MaxScan bounds the records read per partition while searching for the event.
	MaxScan int
	// OrderID, when the caller knows it, narrows the search to the order's partition even
	// when no table remembers the event.
	OrderID string
}

// Report is where the event is.
type Report struct {
	EventID string `json:"event_id"`
	// OrderID, EventType and Version describe the event as far as anything found tells:
	// the outbox row, the Kafka record, a delivery or a repair.
	OrderID   string `json:"order_id,omitempty"`
	EventType string `json:"event_type,omitempty"`
	Version   int    `json:"version,omitempty"`
	orderflow.EventTrace
	Kafka *Location `json:"kafka"`
	// Search says where the topic was searched, so "not found" has its bounds.
	Search string                `json:"kafka_search"`
	Order  *orderflow.OrderTrace `json:"order"`
}

// Location is the event's record on the topic.
type Location struct {
	Topic     string               `json:"topic"`
	Partition int                  `json:"partition"`
	Offset    int64                `json:"offset"`
	Timestamp time.Time            `json:"timestamp"`
	Key       string               `json:"key"`
	Mode      orderflow.RecordMode `json:"mode"`
	Headers   map[string]string    `json:"headers"`
	// event is the record decoded, nil when it could not be.
	event *orderflow.CloudEvent
}

// ErrNotFound is returned (with the report) when nothing anywhere knows the event.
var ErrNotFound = errors.New("no trace of the event")

// Trace gathers the report of eventID.
func Trace(ctx context.Context, cfg Config, s store, eventID string) (*Report, error) {
	id, err := uuid.Parse(eventID)
	if err != nil {
		return nil, fmt.Errorf("trace: event id %q is not a UUID", eventID)
	}
	if cfg.MaxScan <= 0 {
		cfg.MaxScan = DefaultMaxScan
	}
	rep := &Report{EventID: id.String(), OrderID: cfg.OrderID}
	if rep.EventTrace, err = s.TraceEvent(ctx, rep.EventID); err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	rep.describeFromTables()

	loc, search, err := locate(ctx, cfg, rep.EventID, rep.OrderID, rep.hint())
	if err != nil {
		return nil, err
	}
	rep.Kafka, rep.Search = loc, search
	if loc != nil && loc.event != nil {
		if rep.OrderID == "" {
			rep.OrderID = loc.event.Subject
		}
		if rep.EventType == "" {
			rep.EventType = loc.event.Type
		}
		if rep.Version == 0 {
			rep.Version = payloadVersion(loc.event.Data)
		}
	}

	if rep.OrderID != "" {
		o, err := s.TraceOrder(ctx, rep.OrderID)
		if err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
		rep.Order = &o
	}
	if rep.Outbox == nil && rep.Kafka == nil && rep.Repair == nil && len(rep.Deliveries) == 0 &&
		len(rep.ProjectorDeadLetters) == 0 && rep.Receipt == nil {
		return rep, ErrNotFound
	}
	return rep, nil
}

// describeFromTables fills order, type and version from the first table that has them.
func (r *Report) describeFromTables() {
	if ob := r.Outbox; ob != nil {
		r.OrderID, r.EventType = ob.AggregateID, ob.EventType
		r.Version = payloadVersion(ob.Payload)
	}
	if rp := r.Repair; rp != nil {
		r.OrderID, r.Version = rp.OrderID, rp.Version
	}
	for _, d := range r.Deliveries {
		if r.OrderID == "" {
			r.OrderID = d.Subject
		}
		if r.EventType == "" {
			r.EventType = d.EventType
		}
	}
	for _, dl := range r.ProjectorDeadLetters {
		if r.OrderID == "" {
			r.OrderID = dl.OrderID
		}
	}
}

// hint is the earliest time the event's record can carry: capture produces after the outbox
// row's transaction committed, and the row's created_at is taken inside it. A minute of slack
// covers clocks that disagree between the database and capture's host.
func (r *Report) hint() time.Time {
	if r.Outbox == nil {
		return time.Time{}
	}
	return r.Outbox.CreatedAt.Add(-time.Minute)
}

func payloadVersion(b []byte) int {
	var v struct {
		Version int `json:"version"`
	}
	if json.Unmarshal(b, &v) != nil {
		return 0
	}
	return v.Version
}

// locate searches the partition of the order's key, or every partition when the order is
// unknown, for a record whose ce_id is eventID. With a time hint it reads forward from the
// first record at or after the hint; otherwise, or when that fails, backwards from the end in
// windows. Each partition's search reads at most cfg.MaxScan records.
func locate(ctx context.Context, cfg Config, eventID, orderID string, hint time.Time) (*Location, string, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(cfg.Brokers...), Timeout: 10 * time.Second}
	n, err := kafka.PartitionCount(ctx, client, cfg.Topic)
	if err != nil {
		return nil, "", fmt.Errorf("trace: %w", err)
	}
	if n == 0 {
		return nil, fmt.Sprintf("topic %s does not exist", cfg.Topic), nil
	}
	ends, err := kafka.EndOffsets(ctx, client, cfg.Topic, n)
	if err != nil {
		return nil, "", fmt.Errorf("trace: %w", err)
	}
	parts := make([]int, n)
	for p := range parts {
		parts[p] = p
	}
	where := fmt.Sprintf("all %d partitions of %s", n, cfg.Topic)
	if orderID != "" {
		p := partitionOf([]byte(orderID), n)
		parts = []int{p}
		where = fmt.Sprintf("partition %d of %s (the partition of key %s)", p, cfg.Topic, orderID)
	}
	for _, p := range parts {
		s := &scanner{client: client, topic: cfg.Topic, partition: p, eventID: eventID, budget: cfg.MaxScan,
			first: ends[p].FirstOffset, end: ends[p].LastOffset}
		loc, err := s.search(ctx, hint)
		if err != nil {
			return nil, "", err
		}
		if loc != nil {
			return loc, "found in " + where, nil
		}
	}
	return nil, fmt.Sprintf("not found in %s, reading at most %d records per partition", where, cfg.MaxScan), nil
}

// partitionOf is the partition capture writes key to: murmur2, as the Java client does.
func partitionOf(key []byte, n int) int {
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return (&kafkago.Murmur2Balancer{Consistent: true}).Balance(kafkago.Message{Key: key}, parts...)
}

// scanner searches one partition between first and end (exclusive) within a record budget.
type scanner struct {
	client      *kafkago.Client
	topic       string
	partition   int
	eventID     string
	budget      int
	first, end  int64
	scannedFrom int64 // the forward pass read [scannedFrom, end); the backward pass stops there
}

const window = 500

func (s *scanner) search(ctx context.Context, hint time.Time) (*Location, error) {
	s.scannedFrom = s.end
	if !hint.IsZero() {
		start, err := s.offsetAt(ctx, hint)
		if err != nil {
			return nil, err
		}
		loc, err := s.scan(ctx, start, s.end)
		if loc != nil || err != nil {
			return loc, err
		}
		s.scannedFrom = start
	}
	// The newest records first: the event being traced is most often a recent one.
	for hi := s.scannedFrom; hi > s.first && s.budget > 0; {
		lo := max(s.first, hi-int64(min(window, s.budget)))
		loc, err := s.scan(ctx, lo, hi)
		if loc != nil || err != nil {
			return loc, err
		}
		hi = lo
	}
	return nil, nil
}

// offsetAt is the offset of the first record at or after t, or the end when there is none.
func (s *scanner) offsetAt(ctx context.Context, t time.Time) (int64, error) {
	resp, err := s.client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{
		Topics: map[string][]kafkago.OffsetRequest{s.topic: {kafkago.TimeOffsetOf(s.partition, t)}},
	})
	if err != nil {
		return 0, fmt.Errorf("trace: finding the offset of %s in %s[%d]: %w", t, s.topic, s.partition, err)
	}
	for _, po := range resp.Topics[s.topic] {
		if po.Partition != s.partition {
			continue
		}
		if po.Error != nil {
			return 0, fmt.Errorf("trace: finding the offset of %s in %s[%d]: %w", t, s.topic, s.partition, po.Error)
		}
		for off := range po.Offsets {
			if off >= 0 {
				return max(off, s.first), nil
			}
		}
	}
	return s.end, nil
}

// scan reads [from, to) and returns the record of the event, if it is there.
func (s *scanner) scan(ctx context.Context, from, to int64) (*Location, error) {
	for off := from; off < to && s.budget > 0; {
		resp, err := s.client.Fetch(ctx, &kafkago.FetchRequest{
			Topic: s.topic, Partition: s.partition, Offset: off, MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 500 * time.Millisecond,
		})
		if err == nil {
			err = resp.Error
		}
		if err != nil {
			return nil, fmt.Errorf("trace: reading %s[%d] at %d: %w", s.topic, s.partition, off, err)
		}
		progressed := false
		for {
			r, err := resp.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("trace: reading %s[%d]: %w", s.topic, s.partition, err)
			}
			// A fetch may return a batch that starts before the offset asked for.
			if r.Offset < off || r.Offset >= to {
				continue
			}
			off, progressed = r.Offset+1, true
			s.budget--
			if loc := s.match(r); loc != nil {
				return loc, nil
			}
			if s.budget == 0 {
				break
			}
		}
		if !progressed {
			// Nothing at or after off below to: retention removed it meanwhile.
			return nil, nil
		}
	}
	return nil, nil
}

// match returns the record's location when it carries the event: by its ce_id header (both
// record modes have one), or, for a record without one, by decoding it.
func (s *scanner) match(r *kafkago.Record) *Location {
	headers := make([]orderflow.Header, len(r.Headers))
	var id string
	hasID := false
	for i, h := range r.Headers {
		headers[i] = orderflow.Header(h)
		if strings.EqualFold(h.Key, orderflow.HeaderEventID) {
			id, hasID = string(h.Value), true
		}
	}
	if !hasID {
		value, err := kafkago.ReadAll(r.Value)
		if err != nil {
			return nil
		}
		ev, err := orderflow.DecodeRecord(headers, value)
		if err != nil {
			return nil
		}
		id = ev.ID
	}
	if !strings.EqualFold(id, s.eventID) {
		return nil
	}
	mode, _ := orderflow.RecordModeOf(headers)
	loc := &Location{Topic: s.topic, Partition: s.partition, Offset: r.Offset, Timestamp: r.Time.UTC(), Mode: mode,
		Headers: make(map[string]string, len(headers))}
	for _, h := range headers {
		loc.Headers[h.Key] = string(h.Value)
	}
	if r.Key != nil {
		if key, err := kafkago.ReadAll(r.Key); err == nil {
			loc.Key = string(key)
		}
	}
	if value, err := kafkago.ReadAll(r.Value); err == nil {
		loc.event, _ = orderflow.DecodeRecord(headers, value)
	}
	return loc
}
