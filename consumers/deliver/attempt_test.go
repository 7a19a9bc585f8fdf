package deliver

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"orderflow"
	"orderflow/webhook"
)

// TestPostSendsThePayloadSignedWithEverySecret checks what goes over the wire: the payload's
// exact bytes and the Standard Webhooks headers the webhook package builds (the webhook
// package's tests cross-check those with the reference library), signed with the current
// secret and, during a rotation, the previous one too.
func TestPostSendsThePayloadSignedWithEverySecret(t *testing.T) {
	t.Parallel()
	type captured struct {
		header http.Header
		body   []byte
	}
	got := make(chan captured, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- captured{r.Header.Clone(), b}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s := &sender{client: testHTTPClient(1), egress: loopbackPolicy(), policy: DefaultPolicy(), now: time.Now}

	current, previous := mustNewSecret(t), mustNewSecret(t)
	const id = "0192d1e4-7a8b-7c3d-9e0f-123456789abc"
	body := []byte(`{"specversion":"1.0","id":"0192d1e4-7a8b-7c3d-9e0f-123456789abc","type":"order.created","subject":"o-1","data":{"customer_id":"Zoë – 東京","items":[{"sku":"A\nB","quantity":1}]}}`)
	for _, secrets := range [][]string{{current}, {current, previous}} {
		now := time.Now()
		d := orderflow.Delivery{ID: "d", EventID: id, URL: srv.URL, Secrets: secrets, Payload: body}
		if r := s.post(context.Background(), d, now); r.err != nil || r.status != http.StatusNoContent {
			t.Fatalf("post: %+v", r)
		}
		c := <-got
		if !bytes.Equal(c.body, body) {
			t.Fatal("the body on the wire differs from the payload")
		}
		want, err := webhook.SignatureHeader(secrets, id, now, body)
		if err != nil {
			t.Fatal(err)
		}
		if c.header.Get(webhook.HeaderID) != id || c.header.Get(webhook.HeaderTimestamp) != strconv.FormatInt(now.Unix(), 10) ||
			c.header.Get(webhook.HeaderSignature) != want {
			t.Fatalf("headers %v, want id %s, timestamp %d, signature %s", c.header, id, now.Unix(), want)
		}
		for _, secret := range secrets {
			if err := webhook.Verify([]string{secret}, c.header.Get(webhook.HeaderID), c.header.Get(webhook.HeaderTimestamp),
				c.header.Get(webhook.HeaderSignature), c.body, time.Now(), time.Minute); err != nil {
				t.Errorf("the request does not verify with one of its secrets: %v", err)
			}
		}
	}
}

func mustNewSecret(t *testing.T) string {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
