package api

import (
	"testing"
	"time"

	"orderflow"
)

// FuzzDecodeCursor checks the summary cursor decoder on client-supplied strings: no panic,
// and anything it accepts is complete and survives a re-encode unchanged.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(orderflow.SummaryCursor{CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), OrderID: "ord_1"}))
	f.Add("")
	f.Add("e30")                                                  // {}
	f.Add("bnVsbA")                                               // null
	f.Add("!!!")                                                  // not base64url
	f.Add("eyJjcmVhdGVkX2F0IjoiMjAyNS0wMS0wMlQwMzowNDowNVoifQ==") // padded
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			return
		}
		if c.CreatedAt.IsZero() || c.OrderID == "" {
			t.Fatalf("accepted incomplete cursor %+v", c)
		}
		again, err := decodeCursor(encodeCursor(c))
		if err != nil || !again.CreatedAt.Equal(c.CreatedAt) || again.OrderID != c.OrderID {
			t.Fatalf("cursor %+v does not round-trip: %+v, %v", c, again, err)
		}
	})
}
