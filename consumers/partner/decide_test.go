package partner

import (
	"regexp"
	"strings"
	"testing"

	"orderflow"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	unknown := regexp.MustCompile(`^UNKNOWN-`)
	item := func(sku string) orderflow.Item { return orderflow.Item{SKU: sku, Quantity: 1} }
	cases := []struct {
		name   string
		ratio  float64
		draw   float64
		items  []orderflow.Item
		action string
		reason string
	}{
		{"known SKU, no rejections", 0, 0, []orderflow.Item{item("A")}, "fulfill", ""},
		{"unknown SKU always cancels", 0, 0.99, []orderflow.Item{item("A"), item("UNKNOWN-7")}, "cancel", "UNKNOWN-7"},
		{"drawn below the ratio", 0.25, 0.1, []orderflow.Item{item("A")}, "cancel", "rejected"},
		{"drawn above the ratio", 0.25, 0.3, []orderflow.Item{item("A")}, "fulfill", ""},
		{"ratio 1 rejects all", 1, 0.999, []orderflow.Item{item("A")}, "cancel", "rejected"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := &Partner{cfg: Config{RejectRatio: c.ratio, UnknownSKU: unknown, Random: func() float64 { return c.draw }}}
			action, reason := p.decide(&orderflow.Order{Items: c.items})
			if action != c.action || !strings.Contains(reason, c.reason) || (c.reason == "") != (reason == "") {
				t.Fatalf("decide: %s %q, want %s with a reason containing %q", action, reason, c.action, c.reason)
			}
		})
	}
}
