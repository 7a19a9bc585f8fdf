package orderflow_test

import (
	"testing"

	"orderflow"
)

// FuzzDecodeCloudEvent feeds arbitrary Kafka message values to the event decoder and the
// order decoder behind it: a poison message must be refused, never crash a consumer.
func FuzzDecodeCloudEvent(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"e1","type":"order.created","source":"/orders","subject":"o1","schemaversion":1,"data":{"id":"o1","version":1}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"e1","type":"t","subject":"s","data":null}`))
	f.Add([]byte(`{"specversion":"0.3"}`))
	f.Add([]byte(`{"data":` + "\"\xff\"" + `}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := orderflow.DecodeCloudEvent(b)
		if err != nil {
			if ev != nil {
				t.Fatal("refused event returned a value")
			}
			return
		}
		if ev.SpecVersion != "1.0" || ev.ID == "" || ev.Type == "" || ev.Subject == "" || len(ev.Data) == 0 {
			t.Fatalf("accepted incomplete event %+v", ev)
		}
		if o, err := orderflow.OrderFromEvent(ev); err == nil && (o.ID == "" || o.Version < 1) {
			t.Fatalf("accepted order without id or version: %+v", o)
		}
	})
}
