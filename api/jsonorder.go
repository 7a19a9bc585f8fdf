package api

import (
	"encoding/json"
	"strconv"
	"time"

	"orderflow"
)

// The two encodings made on every create and change: the order as answered (and written to
// the outbox), and the new order as fingerprinted. encoding/json reaches every field by
// reflection and was about 3 % of the API's CPU per order; these append the same bytes
// directly. They must be byte for byte what json.Marshal writes: the answer is stored and
// replayed, and a fingerprint that changed would refuse a client's retry across an upgrade
// as a reused key. So they only take strings that json.Marshal writes unchanged (no byte to
// escape, ASCII only) and times it formats plainly, and say no otherwise; the caller then
// uses json.Marshal. jsonorder_test.go checks both against json.Marshal.

// marshalOrder is json.Marshal(o).
func marshalOrder(o *orderflow.Order) ([]byte, error) {
	if b, ok := appendOrder(make([]byte, 0, 320), o); ok {
		return b, nil
	}
	return json.Marshal(o)
}

// marshalNewOrder is json.Marshal(n).
func marshalNewOrder(n orderflow.NewOrder) ([]byte, error) {
	if b, ok := appendNewOrder(make([]byte, 0, 160), n); ok {
		return b, nil
	}
	return json.Marshal(n)
}

func appendOrder(b []byte, o *orderflow.Order) ([]byte, bool) {
	ok := true
	field := func(name, v string) {
		b = append(b, name...)
		b, ok = appendPlainString(b, v, ok)
	}
	field(`{"id":`, o.ID)
	field(`,"customer_id":`, o.CustomerID)
	field(`,"currency":`, o.Currency)
	field(`,"status":`, string(o.Status))
	b = append(b, `,"items":`...)
	b, ok = appendItems(b, o.Items, ok)
	b = append(b, `,"total_cents":`...)
	b = strconv.AppendInt(b, o.TotalCents, 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(o.Version), 10)
	if o.CancelReason != "" {
		field(`,"cancel_reason":`, o.CancelReason)
	}
	b = append(b, `,"created_at":`...)
	b, ok = appendTime(b, o.CreatedAt, ok)
	b = append(b, `,"updated_at":`...)
	b, ok = appendTime(b, o.UpdatedAt, ok)
	if o.CustomerTier != "" {
		field(`,"customer_tier":`, o.CustomerTier)
	}
	return append(b, '}'), ok
}

func appendNewOrder(b []byte, n orderflow.NewOrder) ([]byte, bool) {
	ok := true
	b = append(b, `{"CustomerID":`...)
	b, ok = appendPlainString(b, n.CustomerID, ok)
	b = append(b, `,"Currency":`...)
	b, ok = appendPlainString(b, n.Currency, ok)
	b = append(b, `,"Items":`...)
	b, ok = appendItems(b, n.Items, ok)
	if n.CustomerTier != "" {
		b = append(b, `,"CustomerTier":`...)
		b, ok = appendPlainString(b, n.CustomerTier, ok)
	}
	return append(b, '}'), ok
}

func appendItems(b []byte, items []orderflow.Item, ok bool) ([]byte, bool) {
	if items == nil {
		return append(b, "null"...), ok
	}
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"sku":`...)
		b, ok = appendPlainString(b, it.SKU, ok)
		b = append(b, `,"quantity":`...)
		b = strconv.AppendInt(b, it.Quantity, 10)
		b = append(b, `,"unit_price_cents":`...)
		b = strconv.AppendInt(b, it.UnitPriceCents, 10)
		b = append(b, '}')
	}
	return append(b, ']'), ok
}

// appendPlainString quotes s when json.Marshal would write it unchanged between quotes:
// printable ASCII other than the quote, the backslash and the three it escapes for HTML.
// Anything else is not ok (json.Marshal decides instead).
func appendPlainString(b []byte, s string, ok bool) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return b, false
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), ok
}

// appendTime writes t as time.Time.MarshalJSON does, for UTC times of the years it accepts
// (orders' times are UTC).
func appendTime(b []byte, t time.Time, ok bool) ([]byte, bool) {
	if _, off := t.Zone(); off != 0 {
		return b, false
	}
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), ok
}
