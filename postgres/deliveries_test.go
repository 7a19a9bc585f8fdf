package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

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
	if _, _, err := db.EnqueueAndClaimDeliveries(ctx, []orderflow.WebhookEvent{{ID: id, Type: orderflow.EventOrderCreated, Subject: "o-1",
		Time: time.Now(), Payload: []byte(`{}`)}}, orderflow.DeliveryClaim{}); err != nil {
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
	if _, _, err := db.EnqueueAndClaimDeliveries(ctx, evs, orderflow.DeliveryClaim{}); err != nil {
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

// The intake writes new deliveries already claimed when the deliverer has room for them, so a
// delivery is inserted and updated once instead of also being claimed by an UPDATE. A claim
// made that way must behave as one made by ClaimDeliveries: within the room given, leased
// (nobody else claims it), settled by its token; and a re-read record claims nothing.
func TestEnqueueAndClaimDeliveriesClaimsOnlyNewDeliveriesWithinTheRoomGiven(t *testing.T) {
	t.Parallel()
	db, dsn := mustDB(t)
	ctx := context.Background()
	ep, err := db.CreateEndpoint(ctx, "http://127.0.0.1:1/hook", []string{"*"}, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	var evs []orderflow.WebhookEvent
	for i := range 5 {
		evs = append(evs, orderflow.WebhookEvent{ID: uuid.NewString(), Type: orderflow.EventOrderCreated,
			Subject: "o-" + string(rune('a'+i)), Time: time.Now(), Payload: []byte(`{"n":` + string(rune('0'+i)) + `}`)})
	}
	// Room for 3 on the endpoint, 1 of which the deliverer already holds.
	room := orderflow.DeliveryClaim{Limit: 10, PerEndpoint: 3, InFlight: map[string]int{ep.ID: 1}, Lease: time.Minute}
	claimed, n, err := db.EnqueueAndClaimDeliveries(ctx, evs, room)
	if err != nil || n != 5 || len(claimed) != 2 {
		t.Fatalf("enqueue and claim: %v, wrote %d, claimed %d; want 5 written, 2 claimed", err, n, len(claimed))
	}
	for i, d := range claimed {
		// Oldest first: the batch's first two events.
		if d.EventID != evs[i].ID || string(d.Payload) != string(evs[i].Payload) || d.EndpointID != ep.ID ||
			d.URL != "http://127.0.0.1:1/hook" || d.ClaimToken == "" || len(d.Secrets) != 1 || d.Attempts != 0 {
			t.Fatalf("claimed delivery %d: %+v, want event %s ready to send", i, d, evs[i].ID)
		}
	}
	// The claim loop finds the three left unclaimed, never the two already claimed.
	rest, err := db.ClaimDeliveries(ctx, orderflow.DeliveryClaim{Limit: 10, PerEndpoint: 10, Lease: time.Minute})
	if err != nil || len(rest) != 3 {
		t.Fatalf("claim of the rest: %v, %d deliveries, want 3", err, len(rest))
	}
	for _, d := range rest {
		if d.EventID == evs[0].ID || d.EventID == evs[1].ID {
			t.Fatalf("event %s claimed twice", d.EventID)
		}
	}
	// A re-read batch writes nothing and so claims nothing.
	again, n, err := db.EnqueueAndClaimDeliveries(ctx, evs, orderflow.DeliveryClaim{Limit: 10, PerEndpoint: 10, Lease: time.Minute})
	if err != nil || n != 0 || len(again) != 0 {
		t.Fatalf("re-read batch: %v, wrote %d, claimed %d; want nothing", err, n, len(again))
	}
	// A claim made at insert is settled by its token like any other.
	owned, err := db.RecordAttempts(ctx, []orderflow.DeliveryReport{{Delivery: claimed[0],
		Attempt: orderflow.Attempt{Number: 1, StartedAt: time.Now(), Status: 200, Outcome: "success"},
		Result:  orderflow.DeliveryResult{State: orderflow.DeliverySucceeded}}})
	if err != nil || len(owned) != 1 || !owned[0] {
		t.Fatalf("recording the attempt: %v, owned %v", err, owned)
	}
	var state string
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT state FROM webhook_deliveries WHERE event_id = $1`, evs[0].ID).Scan(&state); err != nil || state != "succeeded" {
		t.Fatalf("delivery of event %s: %v, state %q, want succeeded", evs[0].ID, err, state)
	}
}

// Due deliveries waiting for an endpoint keep their right to its room: a new delivery is
// claimed at insert only in the room they leave, or it would be sent before older ones the
// claim loop has not taken yet, and under a backlog they would starve.
func TestEnqueueAndClaimDeliveriesLeavesNewDeliveriesBehindDueOnes(t *testing.T) {
	t.Parallel()
	db, _ := mustDB(t)
	ctx := context.Background()
	if _, err := db.CreateEndpoint(ctx, "http://127.0.0.1:1/hook", []string{"*"}, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); err != nil {
		t.Fatal(err)
	}
	old := orderflow.WebhookEvent{ID: uuid.NewString(), Type: orderflow.EventOrderCreated, Subject: "o-old", Time: time.Now(), Payload: []byte(`{}`)}
	if _, _, err := db.EnqueueAndClaimDeliveries(ctx, []orderflow.WebhookEvent{old}, orderflow.DeliveryClaim{}); err != nil {
		t.Fatal(err)
	}
	ev := orderflow.WebhookEvent{ID: uuid.NewString(), Type: orderflow.EventOrderCreated, Subject: "o-new", Time: time.Now(), Payload: []byte(`{}`)}
	// Room for one: the due delivery's.
	claimed, n, err := db.EnqueueAndClaimDeliveries(ctx, []orderflow.WebhookEvent{ev}, orderflow.DeliveryClaim{Limit: 10, PerEndpoint: 1, Lease: time.Minute})
	if err != nil || n != 1 || len(claimed) != 0 {
		t.Fatalf("enqueue behind a due delivery: %v, wrote %d, claimed %d; want 1 written, none claimed", err, n, len(claimed))
	}
	// Room for four: two for the due deliveries (the old one, and the one just left unclaimed),
	// the new ones take the rest.
	evs := []orderflow.WebhookEvent{
		{ID: uuid.NewString(), Type: orderflow.EventOrderCreated, Subject: "o-2", Time: time.Now(), Payload: []byte(`{}`)},
		{ID: uuid.NewString(), Type: orderflow.EventOrderCreated, Subject: "o-3", Time: time.Now(), Payload: []byte(`{}`)},
		{ID: uuid.NewString(), Type: orderflow.EventOrderCreated, Subject: "o-4", Time: time.Now(), Payload: []byte(`{}`)},
	}
	claimed, n, err = db.EnqueueAndClaimDeliveries(ctx, evs, orderflow.DeliveryClaim{Limit: 10, PerEndpoint: 4, Lease: time.Minute})
	if err != nil || n != 3 || len(claimed) != 2 || claimed[0].EventID != evs[0].ID || claimed[1].EventID != evs[1].ID {
		t.Fatalf("enqueue with room beside two due deliveries: %v, wrote %d, claimed %+v; want 3 written, the first 2 claimed", err, n, claimed)
	}
	ds, err := db.ClaimDeliveries(ctx, orderflow.DeliveryClaim{Limit: 1, PerEndpoint: 10, Lease: time.Minute})
	if err != nil || len(ds) != 1 || ds[0].EventID != old.ID {
		t.Fatalf("claim: %v, %+v; want the oldest delivery first", err, ds)
	}
}
