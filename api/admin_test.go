package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"orderflow"
	"orderflow/consumers/deliver"
	"orderflow/internal/testenv"
	"orderflow/webhook"
)

func (e *env) admin(method, path, body string) reply {
	e.t.Helper()
	return e.do(method, path, body, "Authorization", "Bearer "+adminKey)
}

func TestWebhookEndpointAdministration(t *testing.T) {
	e := newEnv(t)
	mustStatus(t, e.do(http.MethodPost, "/v1/admin/endpoints", `{"url": "https://partner.example/hook", "event_types": ["order.created"]}`),
		http.StatusForbidden, "forbidden")
	mustStatus(t, e.do(http.MethodGet, "/v1/admin/dead-letters", ""), http.StatusForbidden, "forbidden")

	for name, body := range map[string]string{
		"no url":          `{"event_types": ["order.created"]}`,
		"no event types":  `{"url": "https://partner.example/hook", "event_types": []}`,
		"bad event type":  `{"url": "https://partner.example/hook", "event_types": ["order created"]}`,
		"twice the same":  `{"url": "https://partner.example/hook", "event_types": ["order.created", "order.created"]}`,
		"dot at the end":  `{"url": "https://partner.example/hook", "event_types": ["order."]}`,
		"wildcard prefix": `{"url": "https://partner.example/hook", "event_types": ["order.*"]}`,
	} {
		t.Run(name, func(t *testing.T) {
			mustStatus(t, e.admin(http.MethodPost, "/v1/admin/endpoints", body), http.StatusUnprocessableEntity, "validation-failed")
		})
	}
	mustStatus(t, e.admin(http.MethodPost, "/v1/admin/endpoints", `{"url": "https://x", "event_types": ["a"], "extra": 1}`), http.StatusBadRequest, "malformed-request")
	if n := e.count("webhook_endpoints"); n != 0 {
		t.Fatalf("%d endpoints after refusals", n)
	}

	r := e.admin(http.MethodPost, "/v1/admin/endpoints", `{"url": "https://partner.example/hook", "event_types": ["order.created", "*"]}`)
	mustStatus(t, r, http.StatusCreated, "")
	ep := r.json(t)
	id, secret := ep["id"].(string), ep["secret"].(string)
	if !webhook.ValidSecret(secret) || r.header.Get("Location") != "/v1/admin/endpoints/"+id || ep["disabled"] != false {
		t.Fatalf("created %v (Location %q)", ep, r.header.Get("Location"))
	}
	// The secret is shown once; listings never carry it.
	l := e.admin(http.MethodGet, "/v1/admin/endpoints", "")
	mustStatus(t, l, http.StatusOK, "")
	if strings.Contains(string(l.body), secret) || !strings.Contains(string(l.body), id) {
		t.Fatalf("listing %s", l.body)
	}

	rot := e.admin(http.MethodPost, "/v1/admin/endpoints/"+id+"/rotate-secret", `{"grace_seconds": 3600}`)
	mustStatus(t, rot, http.StatusOK, "")
	rotated := rot.json(t)
	if s := rotated["secret"].(string); !webhook.ValidSecret(s) || s == secret || rotated["previous_secret_expires_at"] == nil {
		t.Fatalf("rotation answered %v", rotated)
	}
	mustStatus(t, e.admin(http.MethodPost, "/v1/admin/endpoints/"+id+"/rotate-secret", `{"grace_seconds": -1}`), http.StatusUnprocessableEntity, "validation-failed")

	d := e.admin(http.MethodPost, "/v1/admin/endpoints/"+id+"/disable", `{"reason": "partner migrating"}`)
	mustStatus(t, d, http.StatusOK, "")
	if o := d.json(t); o["disabled"] != true || o["disabled_reason"] != "partner migrating" {
		t.Fatalf("disabled endpoint %v", o)
	}
	en := e.admin(http.MethodPost, "/v1/admin/endpoints/"+id+"/enable", "")
	mustStatus(t, en, http.StatusOK, "")
	if o := en.json(t); o["disabled"] != false {
		t.Fatalf("enabled endpoint %v", o)
	}
	for _, path := range []string{"/v1/admin/endpoints/" + uuid.NewString() + "/disable", "/v1/admin/endpoints/nope/enable", "/v1/admin/endpoints/nope/rotate-secret"} {
		mustStatus(t, e.admin(http.MethodPost, path, ""), http.StatusNotFound, "endpoint-not-found")
	}
	mustStatus(t, e.admin(http.MethodPost, "/v1/admin/dead-letters/"+uuid.NewString()+"/replay", ""), http.StatusNotFound, "dead-letter-not-found")
	mustStatus(t, e.admin(http.MethodGet, "/v1/admin/dead-letters?limit=0", ""), http.StatusUnprocessableEntity, "validation-failed")
	empty := e.admin(http.MethodGet, "/v1/admin/dead-letters", "")
	mustStatus(t, empty, http.StatusOK, "")
	if string(empty.body) != `{"data":[]}` {
		t.Fatalf("no dead letters answered %s", empty.body)
	}
}

// An exhausted delivery becomes a dead letter an operator can list and replay through the
// admin API; the replay delivers it with the same webhook-id.
func TestDeadLetterReplayThroughTheAdminAPI(t *testing.T) {
	e := newEnv(t)
	brokers := testenv.KafkaBrokers(t)
	var healthy atomic.Bool
	var got atomic.Int64
	var ids = make(chan string, 10)
	var secret atomic.Value
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s, _ := secret.Load().(string)
		if err := webhook.Verify([]string{s}, r.Header.Get(webhook.HeaderID), r.Header.Get(webhook.HeaderTimestamp),
			r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if !healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		got.Add(1)
		ids <- r.Header.Get(webhook.HeaderID)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(receiver.Close)
	r := e.admin(http.MethodPost, "/v1/admin/endpoints", `{"url": "`+receiver.URL+`/hook", "event_types": ["order.created"]}`)
	mustStatus(t, r, http.StatusCreated, "")
	ep := r.json(t)
	secret.Store(ep["secret"].(string))

	topic := testenv.UniqueName("ofadmin")
	ctx := context.Background()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 20 * time.Second}
	ct, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}}})
	if err != nil || ct.Errors[topic] != nil {
		t.Fatalf("creating topic: %v %v", err, ct)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
	eventID := uuid.NewString()
	// The record as capture writes it, in the CloudEvents binary mode.
	data := []byte(`{"id":"o-1","version":1}`)
	var headers []kafka.Header
	for _, h := range orderflow.AppendBinaryHeaders(nil, &orderflow.CloudEvent{ID: eventID, Source: orderflow.EventSource,
		Type: orderflow.EventOrderCreated, Subject: "o-1", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		DataContentType: orderflow.ContentTypeJSON, SchemaVersion: 1, Data: data}) {
		headers = append(headers, kafka.Header(h))
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	for deadline := time.Now().Add(time.Minute); ; {
		err := w.WriteMessages(ctx, kafka.Message{Key: []byte("o-1"), Value: data, Headers: headers})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("producing: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	svc, err := deliver.New(deliver.Config{Brokers: brokers, Topic: topic, GroupID: testenv.UniqueName("ofadmin_group"),
		Policy: deliver.Policy{Timeout: time.Second, MaxAttempts: 3, MaxAge: time.Hour, BaseBackoff: 10 * time.Millisecond,
			MaxBackoff: 50 * time.Millisecond, MaxRetryAfter: time.Second},
		Poll: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Egress: loopbackOnly(t), Secrets: e.ring}, e.db)
	testenv.Must(t, err, "creating deliverer")
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	var letters []map[string]any
	for deadline := time.Now().Add(60 * time.Second); len(letters) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no dead letter within 60 s")
		}
		l := e.admin(http.MethodGet, "/v1/admin/dead-letters?endpoint_id="+ep["id"].(string), "")
		mustStatus(t, l, http.StatusOK, "")
		var page struct {
			Data []map[string]any `json:"data"`
		}
		testenv.Must(t, json.Unmarshal(l.body, &page), "decoding dead letters")
		letters = page.Data
	}
	dl := letters[0]
	if dl["event_id"] != eventID || dl["attempts"].(float64) != 3 || dl["last_status"].(float64) != 500 || dl["endpoint_id"] != ep["id"] {
		t.Fatalf("dead letter %v", dl)
	}
	healthy.Store(true)
	rep := e.admin(http.MethodPost, "/v1/admin/dead-letters/"+dl["id"].(string)+"/replay", "")
	mustStatus(t, rep, http.StatusAccepted, "")
	if o := rep.json(t); o["state"] != "pending" || o["replays"].(float64) != 1 {
		t.Fatalf("replay answered %v", o)
	}
	select {
	case id := <-ids:
		if id != eventID {
			t.Fatalf("replayed webhook-id %q, want the event id %s", id, eventID)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the replay was not delivered within 60 s")
	}
	for deadline := time.Now().Add(30 * time.Second); testenv.Count(t, e.sql, "SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded'") != 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the replayed delivery was not recorded as succeeded within 30 s")
		}
	}
	if l := e.admin(http.MethodGet, "/v1/admin/dead-letters", ""); string(l.body) != `{"data":[]}` {
		t.Fatalf("dead letters after a successful replay: %s", l.body)
	}
	// Replaying a delivered message is refused: there is nothing to replay.
	mustStatus(t, e.admin(http.MethodPost, "/v1/admin/dead-letters/"+dl["id"].(string)+"/replay", ""), http.StatusConflict, "delivery-not-dead")
	if got.Load() != 1 {
		t.Fatalf("%d successful deliveries, want 1", got.Load())
	}
}
