package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"orderflow/api"
	"orderflow/capture"
	"orderflow/consumers/reconcile"
	"orderflow/internal/testenv"
)

// startCapture runs the real capture daemon in-process on the env's database, writing to the
// env's topic.
func (e *env) startCapture(t *testing.T) {
	t.Helper()
	slot := testenv.UniqueName("ofprojslot")
	c, err := capture.New(capture.Config{
		DatabaseURL: e.dsn, Slot: slot, Publication: testenv.UniqueName("ofprojpub"),
		TopicPrefix: strings.TrimSuffix(e.topic, ".order"), AggregateTypes: []string{"order"},
		Kafka:  capture.KafkaConfig{Brokers: e.brokers, Partitions: e.partitions, ReplicationFactor: 1},
		Logger: quietLogger(),
	})
	testenv.Must(t, err, "capture.New")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	// Only changes committed after the slot exists are streamed: wait for it to stream.
	waitFor(t, "capture to stream", 30*time.Second, func() (bool, error) {
		rec := httptest.NewRecorder()
		c.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code == http.StatusOK, nil
	})
	t.Cleanup(func() {
		cancel()
		<-done
		// The walsender takes a moment to let go of the slot; the database cannot be dropped
		// while it holds it.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, e.dsn)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		for ctx.Err() == nil {
			if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

type apiClient struct {
	t   *testing.T
	url string
}

func (c apiClient) do(method, path, body string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	testenv.Must(c.t, err, "request")
	req.Header.Set("Authorization", "Bearer e2e-key")
	if method == http.MethodPost {
		req.Header.Set("Idempotency-Key", uuid.NewString())
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	testenv.Must(c.t, err, method+" "+path)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	testenv.Must(c.t, err, "reading response")
	return resp.StatusCode, b
}

// TestEndToEndFromTheAPIToTheSummaryAndARepair runs the real pipeline: API -> outbox ->
// capture -> Kafka -> projector -> summary endpoint; then deletes a summary and lets
// reconcile --fix repair it through the same pipeline.
func TestEndToEndFromTheAPIToTheSummaryAndARepair(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	db := mustOpenDB(t, e.dsn)
	ctx := context.Background()
	_, err := e.conn.Exec(ctx, `INSERT INTO api_clients (id, name, key_sha256) VALUES ('e2e', 'e2e', sha256('e2e-key'::bytea))`)
	testenv.Must(t, err, "seeding api client")
	_, err = db.SetStock(ctx, "sku-e2e", 1000)
	testenv.Must(t, err, "stocking")
	srv := httptest.NewServer(api.New(db, quietLogger()))
	t.Cleanup(srv.Close)
	c := apiClient{t: t, url: srv.URL}

	e.startCapture(t)
	start(t, e.config(), db)

	want := map[string]int{} // order id -> final version
	for i := 0; i < 30; i++ {
		status, body := c.do(http.MethodPost, "/v1/orders", `{"customer_id": "cust-e2e", "currency": "EUR", "items": [{"sku": "sku-e2e", "quantity": 1, "unit_price_cents": 100}]}`)
		if status != http.StatusCreated {
			t.Fatalf("creating order: %d %s", status, body)
		}
		var o struct{ ID string }
		testenv.Must(t, json.Unmarshal(body, &o), "decoding order")
		want[o.ID] = 1
		if i%3 != 0 {
			action := map[bool]string{true: "fulfill", false: "cancel"}[i%3 == 1]
			if status, body := c.do(http.MethodPost, "/v1/orders/"+o.ID+"/"+action, ""); status != http.StatusOK {
				t.Fatalf("%s: %d %s", action, status, body)
			}
			want[o.ID] = 2
		}
	}

	var lags []int64
	for id, version := range want {
		var sum struct {
			Data      struct{ Version int }
			Freshness struct {
				LagMS int64 `json:"lag_ms"`
				Stale bool
			}
		}
		waitFor(t, "summary of "+id, 60*time.Second, func() (bool, error) {
			status, body := c.do(http.MethodGet, "/v1/orders/"+id+"/summary", "")
			if status != http.StatusOK {
				return false, fmt.Errorf("%d %s", status, body)
			}
			return json.Unmarshal(body, &sum) == nil && sum.Data.Version == version && !sum.Freshness.Stale, nil
		})
		lags = append(lags, sum.Freshness.LagMS)
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	t.Logf("commit -> summary lag over %d orders: p50 %d ms, max %d ms (informational)", len(lags), lags[len(lags)/2], lags[len(lags)-1])

	// Lose one summary; reconcile --fix repairs it through outbox, capture and projector.
	var lost string
	for id := range want {
		lost = id
		break
	}
	_, err = e.conn.Exec(ctx, `DELETE FROM order_summary WHERE order_id = $1`, lost)
	testenv.Must(t, err, "deleting summary")
	if status, body := c.do(http.MethodGet, "/v1/orders/"+lost+"/summary", ""); status != http.StatusNotFound || !strings.Contains(string(body), "summary-not-projected") {
		t.Fatalf("after the delete: %d %s, want summary-not-projected", status, body)
	}
	time.Sleep(10 * time.Millisecond) // past the 1 ms freshness SLA below
	rep, err := reconcile.New(reconcile.Config{FreshnessSLA: time.Millisecond, Fix: true, Logger: quietLogger()}, db).Run(ctx)
	testenv.Must(t, err, "reconciling")
	if rep.Counts[reconcile.KindMissingSummary] != 1 || rep.Drift[0].OrderID != lost || rep.Drift[0].Repair != "published" {
		t.Fatalf("report %+v, want the lost summary repaired", rep)
	}
	waitFor(t, "the repaired summary", 60*time.Second, func() (bool, error) {
		status, _ := c.do(http.MethodGet, "/v1/orders/"+lost+"/summary", "")
		return status == http.StatusOK, nil
	})
	if n := testenv.Count(t, e.conn, `SELECT count(*) FROM order_summary WHERE order_id = $1 AND version = $2`, lost, want[lost]); n != 1 {
		t.Fatalf("repaired summary not at version %d", want[lost])
	}
}
