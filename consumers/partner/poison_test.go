package partner_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow"
)

// TestWebhooksTheDatabaseWouldRefuseDoNotStallTheGoodOnes sends the partner, between good
// webhooks, verified ones crafted to fail on write (a NUL in the subject, a webhook-id of
// invalid UTF-8): the good ones are stored and called back; each bad one is refused with a 400
// problem before anything is written (the hook checks its text first, docs/WEBHOOKS.md), a
// final answer the deliverer dead-letters instead of retrying. Before, the partner answered 503
// to it on every retry. (partner.dead_letters keeps verified webhooks that the database refuses
// for a reason the hook's checks do not cover.)
func TestWebhooksTheDatabaseWouldRefuseDoNotStallTheGoodOnes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	api := newFakeAPI(t, nil)
	cfg := e.partnerConfig()
	cfg.APIURL, cfg.FulfillDelay = api.srv.URL, 0
	e.startPartner(cfg)
	base := "http://" + e.addr

	nulSubject := func() (string, []byte) {
		id := uuid.NewString()
		b, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": id, "source": "/t", "type": "order.created",
			"subject": "order-\x00-nul", "time": time.Now().UTC(), "datacontenttype": "application/json", "schemaversion": 1,
			"data": map[string]any{"id": "order-\x00-nul", "version": 1}})
		return id, b
	}
	var good []string
	sendWant := func(want int, id string, body []byte) {
		t.Helper()
		if st := postHook(t, base, e.secret, id, body); st != want {
			t.Fatalf("webhook %q answered %d, want %d", id, st, want)
		}
	}
	send := func(id string, body []byte) { t.Helper(); sendWant(200, id, body) }
	refused := func(id string, body []byte) { t.Helper(); sendWant(400, id, body) }
	for i := range 6 {
		order := uuid.NewString()
		id, body := hookEvent(order)
		send(id, body)
		good = append(good, order)
		switch i {
		case 1:
			refused(nulSubject()) // would be 22021 on the receipt
		case 3:
			_, body := hookEvent(uuid.NewString())
			refused("bad-\xff\xfe-id", body) // would be 22021 on the receipt's key
		}
	}
	for _, o := range good {
		eventually(t, "the good webhooks called back", 30*time.Second, func() bool { return api.callsFor(o) == 1 })
	}
	if n := e.count(`SELECT count(*) FROM partner.receipts`); n != int64(len(good)) {
		t.Errorf("%d receipts, want %d", n, len(good))
	}
	if n := e.count(`SELECT count(*) FROM partner.dead_letters`) + e.count(`SELECT count(*) FROM partner.callbacks`); n != int64(len(good)) {
		t.Errorf("%d dead letters and callbacks, want only the %d good webhooks' callbacks", n, len(good))
	}
}

// The partner acts once per fact (subject, type, data.version), whatever webhook-id carries
// it: a repair of an order.created it already received is a duplicate.
func TestARepairOfAReceivedFactIsADuplicate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	api := newFakeAPI(t, nil)
	cfg := e.partnerConfig()
	cfg.APIURL, cfg.FulfillDelay = api.srv.URL, 0
	e.startPartner(cfg)
	base := "http://" + e.addr
	order := uuid.NewString()
	id, body := hookEvent(order)
	repairID := orderflow.RepairEventID(order, 1, orderflow.EventOrderCreated)
	repairBody := []byte(strings.Replace(string(body), id, repairID, 1))
	for _, w := range []struct {
		id   string
		body []byte
	}{{id, body}, {repairID, repairBody}, {repairID, repairBody}} {
		if st := postHook(t, base, e.secret, w.id, w.body); st != 200 {
			t.Fatalf("webhook %s answered %d", w.id, st)
		}
	}
	eventually(t, "the callback", 30*time.Second, func() bool { return api.callsFor(order) == 1 })
	time.Sleep(300 * time.Millisecond)
	if n := e.count(`SELECT count(*) FROM partner.receipts WHERE subject = $1`, order); n != 1 {
		t.Errorf("%d receipts for the order, want 1", n)
	}
	if n := api.callsFor(order); n != 1 {
		t.Errorf("%d callbacks for the order, want 1", n)
	}
}

// Webhooks that arrive together share one receipt statement (receipts.go). Sent all at once,
// each three times and once more as a repair (another webhook-id, the same fact), every order
// still gets exactly one receipt and one callback, and every request is answered 200 only
// with its receipt stored.
func TestConcurrentWebhooksAndTheirDuplicatesActOncePerOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	api := newFakeAPI(t, nil)
	cfg := e.partnerConfig()
	cfg.APIURL, cfg.FulfillDelay = api.srv.URL, 0
	e.startPartner(cfg)
	base := "http://" + e.addr

	type hook struct {
		id   string
		body []byte
	}
	var hooks []hook
	var orders []string
	for range 40 {
		order := uuid.NewString()
		id, body := hookEvent(order)
		repairID := orderflow.RepairEventID(order, 1, orderflow.EventOrderCreated)
		hooks = append(hooks, hook{id, body}, hook{id, body}, hook{id, body},
			hook{repairID, []byte(strings.Replace(string(body), id, repairID, 1))})
		orders = append(orders, order)
	}
	start := make(chan struct{})
	statuses := make([]int, len(hooks))
	var wg sync.WaitGroup
	for i, h := range hooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i] = postHook(t, base, e.secret, h.id, h.body)
		}()
	}
	close(start)
	wg.Wait()
	for i, st := range statuses {
		if st != 200 {
			t.Errorf("webhook %s answered %d, want 200", hooks[i].id, st)
		}
	}
	for _, o := range orders {
		eventually(t, "the callback of every order", 30*time.Second, func() bool { return api.callsFor(o) == 1 })
	}
	time.Sleep(300 * time.Millisecond)
	if n := e.count(`SELECT count(*) FROM partner.receipts`); n != int64(len(orders)) {
		t.Errorf("%d receipts, want one per order (%d)", n, len(orders))
	}
	if n := e.count(`SELECT count(*) FROM partner.callbacks`); n != int64(len(orders)) {
		t.Errorf("%d callbacks, want one per order (%d)", n, len(orders))
	}
	for _, o := range orders {
		if n := api.callsFor(o); n != 1 {
			t.Errorf("order %s called back %d times, want 1", o, n)
		}
	}
}
