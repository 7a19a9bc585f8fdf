package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"orderflow"
)

// listingStore answers authentication and records which customer ids reach the database.
type listingStore struct {
	orderStore
	asked []string
}

func (s *listingStore) ClientByKeyDigest(context.Context, []byte) (orderflow.Client, bool, error) {
	return orderflow.Client{ID: "c", Role: orderflow.RoleClient}, true, nil
}

func (s *listingStore) CustomerSummaries(_ context.Context, _ orderflow.Scope, customerID string, _ *orderflow.SummaryCursor, _ int) ([]orderflow.Summary, error) {
	s.asked = append(s.asked, customerID)
	return nil, nil
}

func TestListCustomerOrdersRefusesBadPathText(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		path   string
		status int
	}{
		{"plain", "/v1/customers/c-1/orders", http.StatusOK},
		{"NUL", "/v1/customers/c%00/orders", http.StatusUnprocessableEntity},
		{"invalid UTF-8", "/v1/customers/c%ff/orders", http.StatusUnprocessableEntity},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			store := &listingStore{}
			s := New(store, slog.New(slog.NewTextHandler(io.Discard, nil)))
			r := httptest.NewRequest(http.MethodGet, c.path, nil)
			r.Header.Set("Authorization", "Bearer k")
			w := serve(t, s, r, "")
			body, _ := io.ReadAll(w.Body)
			if w.Code != c.status {
				t.Fatalf("status %d (%s), want %d", w.Code, body, c.status)
			}
			if c.status != http.StatusOK {
				if !strings.Contains(string(body), `"pointer":"#/path/id"`) || len(store.asked) != 0 {
					t.Fatalf("body %s, database asked for %q", body, store.asked)
				}
			}
		})
	}
}
