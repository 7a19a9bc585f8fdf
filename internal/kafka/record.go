package kafka

import (
	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
)

// Headers converts kafka-go record headers to the domain's, for orderflow.DecodeRecord; the
// two types have the same fields, so each is a plain conversion.
func Headers(hs []kafkago.Header) []orderflow.Header {
	out := make([]orderflow.Header, len(hs))
	for i, h := range hs {
		out[i] = orderflow.Header(h)
	}
	return out
}

// DecodeMessage decodes m as a CloudEvent in whichever mode it was written: binary (what
// capture writes), structured, or orderflow's structured records from before the switch to
// binary mode (orderflow.DecodeRecord).
func DecodeMessage(m *kafkago.Message) (*orderflow.CloudEvent, error) {
	return orderflow.DecodeRecord(Headers(m.Headers), m.Value)
}

// Header is the value of the first header named key, "" when there is none.
func Header(hs []kafkago.Header, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
