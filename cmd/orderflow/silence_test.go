package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	kafkago "github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/internal/kafka"
	"orderflow/internal/tcpproxy"
	"orderflow/internal/testenv"
	"orderflow/postgres"
	"orderflow/webhook"
)

// silentBound is what issue 12 asks of every service: a silent network noticed within 30 s.
const silentBound = 30 * time.Second

// outageLength is how long each silence of TestSilentNetworkIsNoticedByEveryService lasts.
const outageLength = 32 * time.Second

// service is one command started in-process by run(), as a user starts it.
type service struct {
	name, addr string
	done       chan error
}

func startService(t *testing.T, name string, env map[string]string) *service {
	t.Helper()
	s := &service{name: name, addr: freeAddr(t), done: make(chan error, 1)}
	env["HTTP_ADDR"] = s.addr
	env["LOG_LEVEL"] = "warn"
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	var mu sync.Mutex
	out := writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(b) })
	go func() { s.done <- run(ctx, []string{name}, func(k string) string { return env[k] }, io.Discard, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(60 * time.Second):
			t.Errorf("%s did not stop within 60 s", name)
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("%s log:\n%s", name, logs.String())
			mu.Unlock()
		}
	})
	return s
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

var opsClient = &http.Client{Timeout: 5 * time.Second}

func (s *service) ready() bool {
	resp, err := opsClient.Get("http://" + s.addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (s *service) exited() error {
	select {
	case err := <-s.done:
		s.done <- err
		return fmt.Errorf("%s exited: %v", s.name, err)
	default:
		return nil
	}
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	testenv.WaitFor(t, what, timeout, func() (bool, error) { return cond(), nil })
	return time.Since(start)
}

// TestSilentNetworkIsNoticedByEveryService runs the API, the projector and the deliverer as
// their commands, with PostgreSQL (the shared one) and Kafka (a private broker) each behind a
// proxy that can stop forwarding without closing a connection. Kafka goes silent, then
// PostgreSQL: each service that uses the silent one turns /readyz false within 30 s, ready
// again once the path returns, and the work of the outage is done after it: every event on
// the topic has its summary and its delivery, every order the API accepted is stored.
func TestSilentNetworkIsNoticedByEveryService(t *testing.T) {
	t.Parallel()
	dsn := testenv.NewDatabase(t)
	kc := testenv.StartKafka(t, testenv.KafkaOptions{Nodes: 1, Proxied: true})
	kpx := kc.Proxy(1)
	pgTarget, err := url.Parse(dsn)
	testenv.Must(t, err, "parsing dsn")
	pgpx := tcpproxy.Start(t, pgTarget.Host)
	viaProxy := *pgTarget
	viaProxy.Host = pgpx.Addr()

	ctx := context.Background()
	topic := testenv.UniqueName("ofsilent") + ".order"
	admin := kafka.NewClient(kc.Brokers(), "test", nil, 0)
	_, err = kafka.CreateTopic(ctx, admin, kafka.TopicSpec{Name: topic, Partitions: 3})
	testenv.Must(t, err, "creating topic")
	db, err := postgres.Open(ctx, dsn, 2)
	testenv.Must(t, err, "opening database")
	defer db.Close()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer hook.Close()
	secret, err := webhook.NewSecret()
	testenv.Must(t, err, "making secret")
	_, err = db.CreateEndpoint(ctx, hook.URL+"/hook", []string{orderflow.EventOrderCreated}, secret)
	testenv.Must(t, err, "creating endpoint")
	sql := testenv.Connect(t, dsn)
	// An admin key stocks the SKU; a client key creates the orders (roles: docs/API.md).
	const apiKey, clientKey = "silent-test-key", "silent-test-client-key"
	_, err = sql.Exec(ctx, `INSERT INTO api_clients (id, name, key_sha256, role) VALUES
		('silent', 'silent', sha256($1::bytea), 'admin'), ('silent-client', 'silent client', sha256($2::bytea), 'client')`,
		[]byte(apiKey), []byte(clientKey))
	testenv.Must(t, err, "creating api key")

	env := func() map[string]string {
		return map[string]string{
			"DATABASE_URL": viaProxy.String(), "KAFKA_BROKERS": strings.Join(kc.Brokers(), ","),
			"PROJECT_TOPIC": topic, "PROJECT_GROUP": testenv.UniqueName("ofproj"),
			"DELIVER_TOPIC": topic, "DELIVER_GROUP": testenv.UniqueName("ofdel"),
		}
	}
	api := startService(t, "api", env())
	project := startService(t, "project", env())
	deliver := startService(t, "deliver", env())
	all := []*service{api, project, deliver}
	for _, s := range all {
		waitUntil(t, s.name+" to be ready", time.Minute, func() bool {
			if err := s.exited(); err != nil {
				t.Fatal(err)
			}
			return s.ready()
		})
	}

	// Events go straight to the broker's own listener, so they can be written while the
	// clients' path is silent.
	direct := kafka.NewClient(kc.Brokers(), "test-direct", kc.DirectDial(1), 0)
	var events []string
	produce := func(n int) {
		t.Helper()
		for range n {
			id, key, b, headers := orderEvent(t)
			_, err := direct.Produce(ctx, &kafkago.ProduceRequest{
				Topic: topic, Partition: len(events) % 3, RequiredAcks: kafkago.RequireAll,
				Records: kafkago.NewRecordReader(kafkago.Record{Key: kafkago.NewBytes(key), Value: kafkago.NewBytes(b), Headers: headers}),
			})
			testenv.Must(t, err, "producing")
			events = append(events, id)
		}
	}
	var orders []string
	createOrder := func() {
		t.Helper()
		body := `{"customer_id":"silent","currency":"EUR","items":[{"sku":"SILENT-1","quantity":1,"unit_price_cents":100}]}`
		req, _ := http.NewRequest(http.MethodPost, "http://"+api.addr+"/v1/orders", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+clientKey)
		req.Header.Set("Idempotency-Key", uuid.NewString())
		req.Header.Set("Content-Type", "application/json")
		resp, err := opsClient.Do(req)
		testenv.Must(t, err, "creating an order")
		defer resp.Body.Close()
		var o struct {
			ID string `json:"id"`
		}
		if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&o) != nil {
			t.Fatalf("creating an order: %d", resp.StatusCode)
		}
		orders = append(orders, o.ID)
	}
	stock, _ := http.NewRequest(http.MethodPut, "http://"+api.addr+"/v1/inventory/SILENT-1", strings.NewReader(`{"stock": 1000}`))
	stock.Header.Set("Authorization", "Bearer "+apiKey)
	stock.Header.Set("Content-Type", "application/json")
	resp, err := opsClient.Do(stock)
	testenv.Must(t, err, "stocking")
	resp.Body.Close()

	caughtUp := func() bool {
		var summaries, deliveries, stored int64
		_ = sql.QueryRow(ctx, `SELECT count(*) FROM order_summary WHERE last_event_id = ANY($1::uuid[])`, events).Scan(&summaries)
		_ = sql.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE event_id = ANY($1)`, events).Scan(&deliveries)
		_ = sql.QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = ANY($1::uuid[])`, orders).Scan(&stored)
		return summaries == int64(len(events)) && deliveries == int64(len(events)) && stored == int64(len(orders))
	}
	produce(20)
	createOrder()
	waitUntil(t, "the services to process the first events", time.Minute, caughtUp)

	// outage makes px silent, checks that exactly the services in affected notice it in time
	// while the others stay ready, and that everything is ready again once the path returns.
	outage := func(what string, px *tcpproxy.Proxy, affected []*service, during func()) {
		t.Helper()
		px.Blackhole()
		silent := time.Now()
		var wg sync.WaitGroup
		for _, s := range affected {
			wg.Add(1)
			go func() {
				defer wg.Done()
				took := waitUntil(t, s.name+" to notice the silent "+what, 2*silentBound, func() bool { return !s.ready() })
				t.Logf("silent %s: %s noticed it after %s", what, s.name, took.Round(100*time.Millisecond))
				if took > silentBound {
					t.Errorf("silent %s: %s noticed it after %s, want within %s", what, s.name, took.Round(100*time.Millisecond), silentBound)
				}
			}()
		}
		during()
		wg.Wait()
		// Long enough that every client's own timeouts fire too (fetches, group sessions,
		// pool connections): the services must reconnect, not merely resume.
		time.Sleep(time.Until(silent.Add(outageLength)))
		t.Logf("silent %s: %s after the path went silent", what, time.Since(silent).Round(100*time.Millisecond))
		px.Restore()
		for _, s := range all {
			took := waitUntil(t, s.name+" to be ready again", 2*time.Minute, func() bool {
				if err := s.exited(); err != nil {
					t.Fatal(err)
				}
				return s.ready()
			})
			t.Logf("silent %s: %s ready again %s after the path returned", what, s.name, took.Round(100*time.Millisecond))
		}
	}
	outage("kafka", kpx, []*service{project, deliver}, func() {
		produce(20) // straight to the broker: waits for the consumers' path
		createOrder()
		if !api.ready() {
			t.Errorf("the API, which does not use Kafka, is not ready while Kafka is silent")
		}
	})
	waitUntil(t, "the services to process what came during the Kafka silence", 2*time.Minute, caughtUp)
	outage("postgresql", pgpx, all, func() { produce(20) })
	produce(5)
	createOrder()
	waitUntil(t, "the services to process what came during the PostgreSQL silence", 2*time.Minute, caughtUp)
	for _, s := range all {
		if err := s.exited(); err != nil {
			t.Error(err)
		}
	}
}

// orderEvent is an order.created event as capture writes it, in the CloudEvents binary mode:
// its id, the record's key (the order id), value (the order) and headers.
func orderEvent(t *testing.T) (id string, key, value []byte, headers []kafkago.Header) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	o := orderflow.Order{ID: uuid.NewString(), CustomerID: "silent", Currency: "EUR", Status: orderflow.StatusPending,
		Items: []orderflow.Item{{SKU: "SILENT-1", Quantity: 1, UnitPriceCents: 100}}, TotalCents: 100, Version: 1, CreatedAt: now, UpdatedAt: now}
	data, err := json.Marshal(o)
	testenv.Must(t, err, "encoding order")
	id = uuid.NewString()
	for _, h := range orderflow.AppendBinaryHeaders(nil, &orderflow.CloudEvent{ID: id, Source: orderflow.EventSource, Type: orderflow.EventOrderCreated,
		Subject: o.ID, Time: now, DataContentType: orderflow.ContentTypeJSON, DataSchema: orderflow.DataSchema(orderflow.EventOrderCreated, 1),
		SchemaVersion: 1, Data: data}) {
		headers = append(headers, kafkago.Header(h))
	}
	return id, []byte(o.ID), data, headers
}
