package orderflow_test

import (
	"strings"
	"testing"

	"orderflow"
)

func TestDecodeCloudEvent(t *testing.T) {
	t.Parallel()
	good := `{"specversion":"1.0","id":"e1","source":"/orderflow/outbox","type":"order.created","subject":"o1",` +
		`"time":"2026-01-02T03:04:05.123456Z","datacontenttype":"application/json","schemaversion":1,"future":"ignored",` +
		`"data":{"id":"o1","status":"pending","version":3,"items":[],"unknown_field":true}}`
	ev, err := orderflow.DecodeCloudEvent([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	o, err := orderflow.OrderFromEvent(ev)
	if err != nil || o.ID != "o1" || o.Version != 3 || o.Status != orderflow.StatusPending {
		t.Fatalf("order %+v, err %v", o, err)
	}
	for name, bad := range map[string]string{
		"not json":       `{`,
		"old spec":       strings.Replace(good, `"1.0"`, `"0.3"`, 1),
		"no id":          strings.Replace(good, `"id":"e1",`, ``, 1),
		"no data":        strings.Split(good, `,"data"`)[0] + `}`,
		"string version": strings.Replace(good, `"schemaversion":1`, `"schemaversion":"1"`, 1),
	} {
		if _, err := orderflow.DecodeCloudEvent([]byte(bad)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	v2, _ := orderflow.DecodeCloudEvent([]byte(strings.Replace(good, `"schemaversion":1`, `"schemaversion":2`, 1)))
	if _, err := orderflow.OrderFromEvent(v2); err == nil {
		t.Error("schema version 2 was accepted")
	}
}
