package api

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"orderflow"
)

// FuzzDecode feeds arbitrary bodies to every request decoder: none may panic, every error
// must be a domain error (rendered as a 4xx, never a 500), and whatever passes validation
// must be text PostgreSQL stores as sent.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"customer_id":"c-1","currency":"EUR","items":[{"sku":"S","quantity":1,"unit_price_cents":100}]}`,
		`{"customer_id":"c\u0000","currency":"EUR","items":[{"sku":"S","quantity":1.5,"unit_price_cents":"1"}]}`,
		"{\"customer_id\":\"\xff\",\"items\":[{\"sku\":\"\xc3\"}]}",
		`{"reason":"changed mind"}`, `{"reason":"a\ud800b"}`, `{"stock":9223372036854775808}`,
		`{"a/b~":{"` + "\xff" + `":[1,"` + "\xfe" + `"]}}`, `[]`, `null`, ``, `{} {}`, `{"items":[` + strings.Repeat("{},", 120) + `{}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		domainErr := func(err error) {
			var de *orderflow.Error
			if err != nil && !errors.As(err, &de) {
				t.Fatalf("decode returned a non-domain error %T: %v", err, err)
			}
		}
		var create createOrderRequest
		err := decode(jsonRequest(body), &create, false)
		domainErr(err)
		if err == nil {
			n, problems := create.newOrder()
			if len(problems) == 0 {
				for _, s := range append([]string{n.CustomerID, n.Currency}, skus(n)...) {
					if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
						t.Fatalf("accepted text PostgreSQL refuses: %q", s)
					}
				}
			}
		}
		var change changeOrderRequest
		err = decode(jsonRequest(body), &change, true)
		domainErr(err)
		if err == nil && orderflow.ValidateText(change.Reason, orderflow.MaxReasonLength) == "" {
			if !utf8.ValidString(change.Reason) || strings.IndexByte(change.Reason, 0) >= 0 {
				t.Fatalf("accepted reason PostgreSQL refuses: %q", change.Reason)
			}
		}
		var stock setStockRequest
		if err := decode(jsonRequest(body), &stock, false); err == nil {
			if stock.Stock.problem(0, MaxStock) == "" && (stock.Stock.n < 0 || stock.Stock.n > MaxStock) {
				t.Fatalf("accepted stock %d", stock.Stock.n)
			}
		} else {
			domainErr(err)
		}
		if !utf8.ValidString(body) {
			_ = invalidUTF8Pointer([]byte(body))
		}
	})
}

func skus(n orderflow.NewOrder) []string {
	var out []string
	for _, it := range n.Items {
		out = append(out, it.SKU)
	}
	return out
}
