package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"orderflow"
)

// keyStore knows some keys, counts the lookups that reach it and how many ran at once.
type keyStore struct {
	orderStore
	delay time.Duration
	known map[string]orderflow.Client // by hex digest

	mu                    sync.Mutex
	calls, now, maxAtOnce int
	failing               bool // the database is away: every lookup fails
}

func (s *keyStore) ClientByKeyDigest(_ context.Context, d []byte) (orderflow.Client, bool, error) {
	s.mu.Lock()
	s.calls++
	s.now++
	s.maxAtOnce = max(s.maxAtOnce, s.now)
	s.mu.Unlock()
	time.Sleep(s.delay)
	s.mu.Lock()
	s.now--
	s.mu.Unlock()
	s.mu.Lock()
	failing := s.failing
	s.mu.Unlock()
	if failing {
		return orderflow.Client{}, false, errors.New("connecting to the database: connection refused")
	}
	c, ok := s.known[hex.EncodeToString(d)]
	return c, ok, nil
}

func (s *keyStore) CustomerSummaries(context.Context, orderflow.Scope, string, *orderflow.SummaryCursor, int) ([]orderflow.Summary, error) {
	return nil, nil
}

func (s *keyStore) lookups() (calls, maxAtOnce int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.maxAtOnce
}

func get(t *testing.T, h http.Handler, key, addr string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/v1/customers/c/orders", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	r.RemoteAddr = addr + ":40000"
	return serve(t, h, r, "")
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestUnknownKeysCostNoQueryEachAttempt: retrying an unknown key is answered from memory; a
// sprayer of new keys gets a few queries per second per address and then 429s without a
// query; and however many sprayers, at most a few lookups use the pool at once.
func TestUnknownKeysCostNoQueryEachAttempt(t *testing.T) {
	t.Parallel()
	t.Run("the same unknown key", func(t *testing.T) {
		t.Parallel()
		st := &keyStore{}
		s := New(st, quiet())
		for i := 0; i < 100; i++ {
			if w := get(t, s, "of_wrong", "192.0.2.1"); w.Code != http.StatusUnauthorized {
				t.Fatalf("attempt %d: %d", i, w.Code)
			}
		}
		if calls, _ := st.lookups(); calls != 1 {
			t.Fatalf("100 attempts with one unknown key made %d queries, want 1", calls)
		}
	})
	t.Run("many unknown keys from one address", func(t *testing.T) {
		t.Parallel()
		st := &keyStore{}
		s := New(st, quiet(), WithKeyLookupLimit(1, 5))
		var limited int
		for i := 0; i < 100; i++ {
			w := get(t, s, fmt.Sprint("of_guess", i), "192.0.2.2")
			switch w.Code {
			case http.StatusUnauthorized:
			case http.StatusTooManyRequests:
				limited++
				if w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "/problems/rate-limited") {
					t.Fatalf("429 without Retry-After or problem type: %v %s", w.Header(), w.Body)
				}
			default:
				t.Fatalf("guess %d: %d", i, w.Code)
			}
		}
		calls, _ := st.lookups()
		if calls > 7 || limited < 90 {
			t.Fatalf("100 guesses made %d queries (%d limited), want about the burst of 5", calls, limited)
		}
		// Another address is not punished for the sprayer.
		if w := get(t, s, "of_other", "192.0.2.3"); w.Code != http.StatusUnauthorized {
			t.Fatalf("another address: %d", w.Code)
		}
	})
	t.Run("sprayers from many addresses", func(t *testing.T) {
		t.Parallel()
		st := &keyStore{delay: 20 * time.Millisecond}
		s := New(st, quiet())
		var wg sync.WaitGroup
		for i := 0; i < 64; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				get(t, s, fmt.Sprint("of_spray", i), fmt.Sprintf("198.51.100.%d", i))
			}()
		}
		wg.Wait()
		if _, most := st.lookups(); most > maxKeyLookups {
			t.Fatalf("%d lookups ran at once, want at most %d", most, maxKeyLookups)
		}
	})
}

// TestEachClientHasItsOwnRate: a client over its rate is answered 429 with Retry-After,
// another client is not.
func TestEachClientHasItsOwnRate(t *testing.T) {
	t.Parallel()
	digest := func(k string) string { return hex.EncodeToString(KeyDigest(k)) }
	st := &keyStore{known: map[string]orderflow.Client{
		digest("of_a1"): {ID: "a", Role: orderflow.RoleClient}, digest("of_a2"): {ID: "a", Role: orderflow.RoleClient},
		digest("of_b"): {ID: "b", Role: orderflow.RoleClient},
	}}
	s := New(st, quiet(), WithRateLimit(0.5, 3))
	for i, key := range []string{"of_a1", "of_a2", "of_a1"} {
		if w := get(t, s, key, "192.0.2.9"); w.Code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d", i, w.Code)
		}
	}
	// The client's keys share its bucket.
	w := get(t, s, "of_a2", "192.0.2.9")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" ||
		!strings.Contains(w.Body.String(), `"type":"https://orderflow.dev/problems/rate-limited"`) {
		t.Fatalf("over the rate: %d Retry-After %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if w := get(t, s, "of_b", "192.0.2.9"); w.Code != http.StatusOK {
		t.Fatalf("another client from the same address: %d", w.Code)
	}
}

// TestParallelFirstRequestsShareOneLookup: a client that opens with many parallel requests
// costs one query and is not mistaken for a key sprayer.
func TestParallelFirstRequestsShareOneLookup(t *testing.T) {
	t.Parallel()
	st := &keyStore{delay: 50 * time.Millisecond, known: map[string]orderflow.Client{
		hex.EncodeToString(KeyDigest("of_real")): {ID: "a", Role: orderflow.RoleClient}}}
	s := New(st, quiet(), WithKeyLookupLimit(1, 1))
	var wg sync.WaitGroup
	codes := make([]int, 50)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = get(t, s, "of_real", "192.0.2.20").Code
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("request %d: %d", i, c)
		}
	}
	if calls, _ := st.lookups(); calls != 1 {
		t.Fatalf("50 parallel requests with one key made %d queries, want 1", calls)
	}
}

// TestADatabaseOutageIsNotAKeySpray: lookups of a known key that fail while the database is
// away (the drill's PostgreSQL restart) do not use up the address's budget of unknown keys, so
// the client is served again as soon as the database is back, not answered 429.
func TestADatabaseOutageIsNotAKeySpray(t *testing.T) {
	t.Parallel()
	const key = "of_known_key"
	d := sha256.Sum256([]byte(key))
	st := &keyStore{known: map[string]orderflow.Client{hex.EncodeToString(d[:]): {ID: "c", Role: orderflow.RoleClient}}, failing: true}
	s := New(st, quiet(), WithKeyLookupLimit(1, 2))
	for i := 0; i < 20; i++ {
		if w := get(t, s, key, "192.0.2.9"); w.Code == http.StatusTooManyRequests || w.Code < 500 {
			t.Fatalf("lookup %d with the database away: %d, want a 5xx that is not a 429", i, w.Code)
		}
	}
	st.mu.Lock()
	st.failing = false
	st.mu.Unlock()
	if w := get(t, s, key, "192.0.2.9"); w.Code != http.StatusOK {
		t.Fatalf("the database is back: %d %s, want 200", w.Code, w.Body)
	}
}
