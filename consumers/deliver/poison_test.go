package deliver_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow"
	"orderflow/consumers/deliver"
	"orderflow/internal/testenv"
)

// crafted is a CloudEvent value built by hand, to put in it what capture never would.
func crafted(t *testing.T, id, subject string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"specversion": "1.0", "id": id, "source": "/t", "type": "order.created",
		"subject": subject, "time": time.Now().UTC(), "datacontenttype": "application/json", "schemaversion": 1,
		"data": map[string]any{"id": subject, "version": 1}})
	testenv.Must(t, err, "encoding crafted event")
	return b
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n/2)
	_, err := rand.Read(b)
	testenv.Must(t, err, "reading random bytes")
	return hex.EncodeToString(b)
}

// TestIntakeDeadLettersRecordsTheDatabaseRefuses feeds the intake, between good records,
// records crafted to fail on write (a NUL in the subject, an event id too large for the
// unique index, a value that is not a CloudEvent): the good ones are delivered, each bad one is
// recorded in webhook_intake_dead_letters with its reason, and the group commits past them.
// Before, the NUL made the intake retry its batch forever and nothing behind it moved.
func TestIntakeDeadLettersRecordsTheDatabaseRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newReceiver(t, nil)
	ep := e.endpoint(r.srv.URL, "*")
	r.setSecrets(ep.Secret)

	var good []string
	var values [][]byte
	addGood := func() {
		ev, b := event(t, "order.created")
		good = append(good, ev.ID)
		values = append(values, b)
	}
	addGood()
	// A NUL in the subject: the decoder refuses it (no CloudEvents string holds one) before
	// PostgreSQL would (22021).
	values = append(values, crafted(t, uuid.NewString(), "order-with-a-\x00-nul"))
	addGood()
	values = append(values, crafted(t, randomHex(t, 100<<10), uuid.NewString())) // index row too large: 54000
	addGood()
	values = append(values, []byte("not a cloudevent"))
	addGood()
	e.produceRaw(values...)
	svc := e.start(nil)

	eventually(t, "the good records delivered", 60*time.Second, func() bool { return r.acceptedCount() == len(good) })
	eventually(t, "the bad records dead-lettered", 30*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM webhook_intake_dead_letters`) == 3
	})
	for _, want := range []string{"control character U+0000", "index row", "decoding cloudevent"} {
		if n := e.count(`SELECT count(*) FROM webhook_intake_dead_letters WHERE error LIKE '%' || $1 || '%'`, want); n != 1 {
			t.Errorf("%d intake dead letters give the reason %q, want 1", n, want)
		}
	}
	if n := e.count(`SELECT count(*) FROM webhook_deliveries`); n != int64(len(good)) {
		t.Errorf("%d deliveries, want %d (the good records only)", n, len(good))
	}
	eventually(t, "the group committed past every record", 30*time.Second, func() bool {
		_, m := get(metricsURL(t, svc))
		return strings.Contains(m, "orderflow_deliver_intake_dead_lettered_total 3") && lagZero(m)
	})
}

// TestSenderRecordsAnAnswerItCannotReadAndMovesOn points the sender at an endpoint that
// answers a status line of invalid UTF-8 and a NUL, which ends up in the attempt's error text,
// beside a healthy endpoint: every attempt is recorded, the healthy endpoint gets everything
// once, and the garbled one's deliveries end as dead letters with the reason after the policy's
// attempts, never retried forever and never sinking the other attempts' reports.
func TestSenderRecordsAnAnswerItCannotReadAndMovesOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err, "listening")
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for { // read the request head and body, then answer garbage
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				_, _ = br.Discard(1 << 20)
				_, _ = c.Write([]byte("HTTP/1.1 2\xff\x00 \xfe\r\nContent-Length: 0\r\n\r\n"))
			}()
		}
	}()
	garbled := e.endpoint("http://"+ln.Addr().String()+"/hook", "order.created")
	healthy := newReceiver(t, nil)
	ep := e.endpoint(healthy.srv.URL, "order.created")
	healthy.setSecrets(ep.Secret)
	const n = 5
	for range n {
		_, b := event(t, "order.created")
		e.produce(b)
	}
	e.start(func(c *deliver.Config) { c.Policy.MaxAttempts = 3 })

	eventually(t, "the healthy endpoint served", 60*time.Second, func() bool { return healthy.acceptedCount() == n })
	eventually(t, "the garbled endpoint's deliveries dead", 60*time.Second, func() bool {
		return e.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND state = 'dead' AND attempts = 3
			AND last_error LIKE '%malformed HTTP%'`, garbled.ID) == n
	})
	if got := e.count(`SELECT count(*) FROM webhook_delivery_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
		WHERE d.endpoint_id = $1`, garbled.ID); got != 3*n {
		t.Errorf("%d attempts logged for the garbled endpoint, want %d", got, 3*n)
	}
	if got := e.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND state = 'succeeded' AND attempts = 1`, ep.ID); got != n {
		t.Errorf("%d deliveries to the healthy endpoint succeeded at the first attempt, want %d", got, n)
	}
}

// A repair restates a fact (subject, type, data.version) under an id of its own: an endpoint
// that has a delivery of the fact gets no second one, so a partner never sees one fact under
// two webhook-ids; a fact it never got is delivered once.
func TestARepairOfAFactAnEndpointHasIsNotDeliveredAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newReceiver(t, nil)
	ep := e.endpoint(r.srv.URL, "order.created")
	r.setSecrets(ep.Secret)
	original, b := event(t, "order.created")
	restate := func(ev orderflow.CloudEvent) (orderflow.CloudEvent, []byte) {
		ev.ID = orderflow.RepairEventID(ev.Subject, 1, ev.Type)
		b, err := json.Marshal(ev)
		testenv.Must(t, err, "encoding repair")
		return ev, b
	}
	repair, rb := restate(original)
	lostOriginal, _ := event(t, "order.created") // never produced: only its repair is
	lostRepair, lb := restate(lostOriginal)
	e.produce(b, rb, lb, rb)
	e.start(nil)
	eventually(t, "deliveries", 60*time.Second, func() bool { return r.acceptedCount() == 2 })
	time.Sleep(500 * time.Millisecond) // anything more would arrive now
	_, acc, _ := r.snapshot()
	if len(acc) != 2 || acc[original.ID] != 1 || acc[lostRepair.ID] != 1 || acc[repair.ID] != 0 {
		t.Fatalf("accepted %v, want %s and %s once each and never %s", acc, original.ID, lostRepair.ID, repair.ID)
	}
}
