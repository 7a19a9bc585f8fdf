package tail

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
)

func TestPrintable(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"order.created":      "order.created",
		"ü€ line\nnext\ttab": "ü€ line\nnext\ttab",
		"\x1b[2J":            `"\x1b[2J"`,
		"bad\xffbyte":        `"bad\xffbyte"`,
		"c1 \u0085 control":  `"c1 \u0085 control"`,
		"":                   "",
	} {
		if got := printable([]byte(in)); got != want {
			t.Errorf("printable(%q) = %s, want %s", in, got, want)
		}
	}
}

// Filters apply to the decoded event; a record that cannot be decoded shows only unfiltered.
func TestKeep(t *testing.T) {
	t.Parallel()
	ev := &orderflow.CloudEvent{Type: orderflow.EventOrderCreated, Subject: "o1"}
	good, bad := record{event: ev}, record{err: errors.New("no")}
	for _, tc := range []struct {
		cfg        Config
		good, poor bool
	}{
		{Config{}, true, true},
		{Config{Types: []string{"order.created", "order.fulfilled"}}, true, false},
		{Config{Types: []string{"order.fulfilled"}}, false, false},
		{Config{Subject: "o1"}, true, false},
		{Config{Subject: "o2"}, false, false},
	} {
		pr := &printer{cfg: tc.cfg}
		if pr.keep(good) != tc.good || pr.keep(bad) != tc.poor {
			t.Errorf("%+v: keeps the event %v and the undecodable record %v", tc.cfg, pr.keep(good), pr.keep(bad))
		}
	}
}

func TestWriteJSONOfAnUndecodableRecord(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	rec := decode(kafkago.Message{Topic: "t", Partition: 1, Offset: 7, Key: []byte("k"), Value: []byte("not json"),
		Headers: []kafkago.Header{{Key: "ce_id", Value: []byte("e1")}}})
	if err := writeJSON(&b, rec); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%s: %v", b.String(), err)
	}
	if got["value"] != "not json" || got["error"] == nil || got["event"] != nil || got["mode"] != "legacy" ||
		got["headers"].(map[string]any)["ce_id"] != "e1" || got["offset"] != 7.0 {
		t.Errorf("wrote %s", b.String())
	}
}
