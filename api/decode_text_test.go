package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"orderflow"
)

func jsonRequest(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/orders", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

// TestDecodeRefusesBadText checks that text PostgreSQL would refuse is refused with a field
// problem naming the field, whether it arrives as raw invalid bytes (which encoding/json
// would otherwise turn into U+FFFD) or as a \u0000 escape.
func TestDecodeRefusesBadText(t *testing.T) {
	t.Parallel()
	const items = `"items":[{"sku":"S","quantity":1,"unit_price_cents":1}]`
	cases := []struct {
		name    string
		body    string
		pointer string
		detail  string
	}{
		{"invalid UTF-8 customer", `{"customer_id":"c` + "\xff" + `","currency":"EUR",` + items + `}`, "/customer_id", "must be valid UTF-8"},
		{"invalid UTF-8 SKU", `{"customer_id":"c","currency":"EUR","items":[{"sku":"S","quantity":1,"unit_price_cents":1},{"sku":"` + "\xc3" + `","quantity":1,"unit_price_cents":1}]}`, "/items/1/sku", "must be valid UTF-8"},
		{"invalid UTF-8 currency", `{"customer_id":"c","currency":"EU` + "\x80" + `",` + items + `}`, "/currency", "must be valid UTF-8"},
		{"NUL escape in customer", `{"customer_id":"c\u0000","currency":"EUR",` + items + `}`, "/customer_id", "must not contain NUL characters"},
		{"NUL escape in SKU", `{"customer_id":"c","currency":"EUR","items":[{"sku":"\u0000","quantity":1,"unit_price_cents":1}]}`, "/items/0/sku", "must not contain NUL characters"},
		{"lone surrogate escape", `{"customer_id":"c\ud800","currency":"EUR",` + items + `}`, "/customer_id", `must not hold a lone surrogate escape (\ud800 to \udfff outside a pair)`},
		{"lone low surrogate escape", `{"customer_id":"c","currency":"EUR","items":[{"sku":"\udc00x","quantity":1,"unit_price_cents":1}]}`, "/items/0/sku", `must not hold a lone surrogate escape (\ud800 to \udfff outside a pair)`},
		{"surrogate pair is text", `{"customer_id":"c\ud83d\ude00","currency":"EUR",` + items + `}`, "", ""},
		{"escaped backslash before u is text", `{"customer_id":"c\\ud800","currency":"EUR",` + items + `}`, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var req createOrderRequest
			err := decode(jsonRequest(c.body), &req, false)
			var fields []orderflow.FieldProblem
			if err != nil {
				var de *orderflow.Error
				if !errors.As(err, &de) || de.Code != orderflow.ECodeValidation {
					t.Fatalf("decode: %v, want a validation error", err)
				}
				fields = de.Fields
			} else {
				_, fields = req.newOrder()
			}
			if c.pointer == "" && len(fields) == 0 {
				return
			}
			if len(fields) != 1 || fields[0].Pointer != c.pointer || fields[0].Detail != c.detail {
				t.Fatalf("problems %+v, want one at %s: %s", fields, c.pointer, c.detail)
			}
		})
	}
}

func TestDecodeReasonText(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		body   string
		detail string
	}{
		{"plain", `{"reason":"changed mind"}`, ""},
		{"NUL escape", `{"reason":"a\u0000b"}`, "must not contain NUL characters"},
		{"too long", `{"reason":"` + strings.Repeat("é", orderflow.MaxReasonLength+1) + `"}`, "must be at most 500 characters"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var req changeOrderRequest
			if err := decode(jsonRequest(c.body), &req, true); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got := orderflow.ValidateText(req.Reason, orderflow.MaxReasonLength); got != c.detail {
				t.Fatalf("reason problem %q, want %q", got, c.detail)
			}
		})
	}
	var req changeOrderRequest
	err := decode(jsonRequest(`{"reason":"caf`+"\xe9"+`"}`), &req, true)
	var de *orderflow.Error
	if !errors.As(err, &de) || len(de.Fields) != 1 || de.Fields[0].Pointer != "/reason" {
		t.Fatalf("invalid UTF-8 reason: %v, want a field problem at /reason", err)
	}
}

func TestInvalidUTF8Pointer(t *testing.T) {
	t.Parallel()
	cases := []struct{ body, pointer string }{
		{`"` + "\xff" + `"`, ""},
		{`{"a":"ok","b":"` + "\xff" + `"}`, "/b"},
		{`{"a/b~c":"` + "\xff" + `"}`, "/a~1b~0c"},
		{`{"a":[1,{"x":null},["y","` + "\xff" + `"]]}`, "/a/2/1"},
		{`{"a":{"b":{}},"c":["` + "\xff" + `"]}`, "/c/0"},
		{`{"outer":{"` + "\xff" + `":1}}`, "/outer"},
	}
	for _, c := range cases {
		if got := invalidUTF8Pointer([]byte(c.body)); got != c.pointer {
			t.Errorf("invalidUTF8Pointer(%q) = %q, want %q", c.body, got, c.pointer)
		}
	}
}

func TestIdempotencyKeyText(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		key  string
		ok   bool
	}{
		{"plain", "k-1", true},
		{"NUL", "k\x00", false},
		{"invalid UTF-8", "k\xff", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/v1/orders", nil)
			r.Header["Idempotency-Key"] = []string{c.key}
			_, err := idempotencyKey(r)
			if c.ok {
				if err != nil {
					t.Fatalf("idempotencyKey: %v", err)
				}
				return
			}
			var de *orderflow.Error
			if !errors.As(err, &de) || de.Code != codeKeyInvalid || len(de.Fields) != 1 || de.Fields[0].Pointer != "#/header/Idempotency-Key" {
				t.Fatalf("idempotencyKey: %v, want %s naming the header", err, codeKeyInvalid)
			}
		})
	}
}
