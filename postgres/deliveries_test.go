package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow"
)

// An attempt's error is whatever the network or the endpoint said; cut at a byte count it
// could split a character or carry a NUL, which PostgreSQL refuses, failing the whole batch.
func TestRecordAttemptsStoresAnyErrorText(t *testing.T) {
	t.Parallel()
	db, _ := mustDB(t)
	ctx := context.Background()
	ep, err := db.CreateEndpoint(ctx, "http://127.0.0.1:1/hook", []string{"*"}, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	if _, err := db.EnqueueDeliveries(ctx, []orderflow.WebhookEvent{{ID: id, Type: orderflow.EventOrderCreated, Subject: "o-1",
		Time: time.Now(), Payload: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	ds, err := db.ClaimDeliveries(ctx, orderflow.DeliveryClaim{Limit: 1, PerEndpoint: 1, Lease: time.Minute})
	if err != nil || len(ds) != 1 || ds[0].EndpointID != ep.ID {
		t.Fatalf("claim: %v, %+v", err, ds)
	}
	// 999 ASCII bytes, then a 3-byte character across the 1000-byte limit, then a NUL.
	msg := strings.Repeat("x", 999) + "東\x00"
	owned, err := db.RecordAttempts(ctx, []orderflow.DeliveryReport{{Delivery: ds[0],
		Attempt: orderflow.Attempt{Number: 1, StartedAt: time.Now(), Outcome: "network", Error: msg},
		Result:  orderflow.DeliveryResult{State: orderflow.DeliveryDead}}})
	if err != nil || len(owned) != 1 || !owned[0] {
		t.Fatalf("recording the attempt: %v, owned %v", err, owned)
	}
	letters, err := db.DeadLetters(ctx, "", "", 10)
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters: %v, %+v", err, letters)
	}
	if l := letters[0]; l.State != orderflow.DeliveryDead || l.LastError != strings.Repeat("x", 999) {
		t.Fatalf("dead letter %+v, want state dead and the error cut before the split character", l)
	}
}

// One report PostgreSQL refuses must not sink its batch: the others are recorded (or their
// deliveries would be sent again after the lease), and the refused one is settled with the
// refusal as its reason instead of being retried forever.
func TestRecordAttemptsIsolatesARefusedReport(t *testing.T) {
	t.Parallel()
	db, _ := mustDB(t)
	ctx := context.Background()
	if _, err := db.CreateEndpoint(ctx, "http://127.0.0.1:1/hook", []string{"*"}, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); err != nil {
		t.Fatal(err)
	}
	var evs []orderflow.WebhookEvent
	for i := range 3 {
		evs = append(evs, orderflow.WebhookEvent{ID: uuid.NewString(), Type: orderflow.EventOrderCreated,
			Subject: "o-" + string(rune('a'+i)), Time: time.Now(), Payload: []byte(`{}`)})
	}
	if _, err := db.EnqueueDeliveries(ctx, evs); err != nil {
		t.Fatal(err)
	}
	ds, err := db.ClaimDeliveries(ctx, orderflow.DeliveryClaim{Limit: 3, PerEndpoint: 3, Lease: time.Minute})
	if err != nil || len(ds) != 3 {
		t.Fatalf("claim: %v, %d deliveries", err, len(ds))
	}
	var rs []orderflow.DeliveryReport
	for i, d := range ds {
		r := orderflow.DeliveryReport{Delivery: d, Attempt: orderflow.Attempt{Number: 1, StartedAt: time.Now(), Status: 200, Outcome: "success"},
			Result: orderflow.DeliveryResult{State: orderflow.DeliverySucceeded}}
		if i == 1 { // crafted: a NUL in a text column, refused with SQLSTATE 22021
			r.Attempt = orderflow.Attempt{Number: 1, StartedAt: time.Now(), Status: 500, Outcome: "http\x005xx"}
			r.Result = orderflow.DeliveryResult{State: orderflow.DeliveryPending, NextAttemptAt: time.Now().Add(time.Minute)}
		}
		rs = append(rs, r)
	}
	owned, err := db.RecordAttempts(ctx, rs)
	if err != nil || len(owned) != 3 || !owned[0] || !owned[1] || !owned[2] {
		t.Fatalf("recording: %v, owned %v; want all three recorded", err, owned)
	}
	letters, err := db.DeadLetters(ctx, "", "", 10)
	if err != nil || len(letters) != 1 || letters[0].ID != ds[1].ID || !strings.Contains(letters[0].LastError, "could not be stored") {
		t.Fatalf("dead letters %+v (%v), want only the refused report's delivery, with the reason", letters, err)
	}
}
