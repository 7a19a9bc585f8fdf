// Package cetest reads Kafka records the way a CloudEvents SDK user would, for tests: the Go
// SDK (sdk-go) decodes them through a Kafka binding, and each event's data is validated against
// the JSON Schema its dataschema names.
package cetest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"orderflow"
	"orderflow/schemas"
)

// The CloudEvents Go SDK (sdk-go) has Kafka bindings for sarama and confluent-kafka-go but none
// for segmentio/kafka-go. message is the SDK's binding.Message over orderflow's Header, a
// line-for-line port of the sarama binding's Message (protocol/kafka_sarama/v2/message.go):
// lower-cased header names, structured mode when content-type names a known event format,
// binary mode when ce_specversion names a known version, anything else unknown. The attribute
// parsing and validation are the SDK's own.
type message struct {
	value       []byte
	headers     map[string][]byte
	contentType string
	format      format.Format
	version     spec.Version
}

var specs = spec.WithPrefix("ce_")

var (
	_ binding.Message               = (*message)(nil)
	_ binding.MessageMetadataReader = (*message)(nil)
)

func newMessage(headers []orderflow.Header, value []byte) *message {
	m := &message{value: value, headers: make(map[string][]byte, len(headers))}
	for _, h := range headers {
		k := strings.ToLower(h.Key)
		if k == "content-type" {
			m.contentType = string(h.Value)
		}
		m.headers[k] = h.Value
	}
	if ft := format.Lookup(m.contentType); ft != nil {
		m.format = ft
	} else if v := specs.Version(string(m.headers[specs.PrefixedSpecVersionName()])); v != nil {
		m.version = v
	}
	return m
}

func (m *message) ReadEncoding() binding.Encoding {
	switch {
	case m.version != nil:
		return binding.EncodingBinary
	case m.format != nil:
		return binding.EncodingStructured
	}
	return binding.EncodingUnknown
}

func (m *message) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	if m.format == nil {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, m.format, bytes.NewReader(m.value))
}

func (m *message) ReadBinary(_ context.Context, w binding.BinaryWriter) error {
	if m.version == nil {
		return binding.ErrNotBinary
	}
	for k, v := range m.headers {
		var err error
		switch {
		case strings.HasPrefix(k, "ce_"):
			if attr := m.version.Attribute(k); attr != nil {
				err = w.SetAttribute(attr, string(v))
			} else {
				err = w.SetExtension(strings.TrimPrefix(k, "ce_"), string(v))
			}
		case k == "content-type":
			err = w.SetAttribute(m.version.AttributeFromKind(spec.DataContentType), string(v))
		}
		if err != nil {
			return err
		}
	}
	if m.value != nil {
		return w.SetData(bytes.NewReader(m.value))
	}
	return nil
}

func (m *message) GetAttribute(k spec.Kind) (spec.Attribute, any) {
	if attr := m.version.AttributeFromKind(k); attr != nil {
		return attr, string(m.headers[attr.PrefixedName()])
	}
	return nil, nil
}

func (m *message) GetExtension(name string) any { return string(m.headers["ce_"+name]) }

func (m *message) Finish(error) error { return nil }

// Decode is what a data engineer's SDK reader does with a record: decode, then validate.
func Decode(headers []orderflow.Header, value []byte) (*event.Event, error) {
	ev, err := binding.ToEvent(context.Background(), newMessage(headers, value))
	if err != nil {
		return nil, err
	}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	return ev, nil
}

// Schema compiles the schema an event names, asserting formats (date-time), which draft
// 2020-12 otherwise only annotates. Compiled schemas are cached: capture tests validate
// thousands of records.
func Schema(tb testing.TB, eventType string, version int) *jsonschema.Schema {
	tb.Helper()
	key := eventType + "/" + strconv.Itoa(version)
	if s, ok := compiled.Load(key); ok {
		return s.(*jsonschema.Schema)
	}
	b, ok := schemas.Schema(eventType, version)
	if !ok {
		tb.Fatalf("no schema for %s v%d", eventType, version)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	id := schemas.ID(eventType, version)
	if err := c.AddResource(id, doc); err != nil {
		tb.Fatal(err)
	}
	s, err := c.Compile(id)
	if err != nil {
		tb.Fatal(err)
	}
	compiled.Store(key, s)
	return s
}

var compiled sync.Map // "type/version" -> *jsonschema.Schema

// ValidateData checks an SDK-decoded event's data against the schema of its type and the
// version its schemaversion extension names, and that its dataschema attribute names that
// schema.
func ValidateData(tb testing.TB, ev *event.Event) error {
	tb.Helper()
	v, err := strconv.Atoi(fmt.Sprint(ev.Extensions()["schemaversion"]))
	if err != nil {
		return fmt.Errorf("event %s: schemaversion %v: %w", ev.ID(), ev.Extensions()["schemaversion"], err)
	}
	if want := schemas.ID(ev.Type(), v); ev.DataSchema() != want {
		return fmt.Errorf("event %s: dataschema %q, want %q", ev.ID(), ev.DataSchema(), want)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(ev.Data()))
	if err != nil {
		return fmt.Errorf("event %s: data is not JSON: %w", ev.ID(), err)
	}
	if err := Schema(tb, ev.Type(), v).Validate(doc); err != nil {
		return fmt.Errorf("event %s: data does not validate against %s: %w", ev.ID(), ev.DataSchema(), err)
	}
	return nil
}
