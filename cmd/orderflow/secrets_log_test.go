package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"orderflow/internal/testenv"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNoLogLineHoldsAKeyOrASecret runs the real binaries at debug level, each as its own
// PostgreSQL role, through everything
// that touches an API key or a webhook secret (creating keys, refused and accepted keys,
// registering an endpoint, rotating its secret, signing, verifying good and forged webhooks,
// the partner's callbacks) and then searches every line they logged for every key and
// secret in play, whole or as their random part.
func TestNoLogLineHoldsAKeyOrASecret(t *testing.T) {
	t.Parallel()
	dsn := testenv.NewDatabase(t)
	brokers := strings.Join(testenv.KafkaBrokers(t), ",")
	bin := testenv.Binary(t)
	logs := &lockedBuffer{}
	ringKey := make([]byte, 32)
	_, _ = rand.Read(ringKey)
	ring := "k1:" + base64.StdEncoding.EncodeToString(ringKey)
	prefix := testenv.UniqueName("oflogs")
	slot := testenv.UniqueName("oflogs_slot")
	t.Cleanup(func() {
		client := &kafka.Client{Addr: kafka.TCP(strings.Split(brokers, ",")...), Timeout: 20 * time.Second}
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{prefix + ".order"}})
	})
	common := []string{"DATABASE_URL=" + dsn, "KAFKA_BROKERS=" + brokers, "LOG_LEVEL=debug",
		"WEBHOOK_KEYRING=" + ring, "WEBHOOK_ALLOW=127.0.0.1"}

	apikey := func(client, role string) string {
		cmd := exec.Command(bin, "apikey", "create", "-client", client, "-role", role)
		cmd.Env = append(os.Environ(), common...)
		cmd.Stderr = logs
		out, err := cmd.Output()
		testenv.Must(t, err, "apikey create")
		return strings.TrimSpace(string(out))
	}
	clientKey, partnerKey, adminKey := apikey("shop", "client"), apikey("partner", "fulfiller"), apikey("admin", "admin")

	start := func(name, addr string, env ...string) {
		cmd := exec.Command(bin, name)
		cmd.Env = append(os.Environ(), append(append([]string{"HTTP_ADDR=" + addr}, common...), env...)...)
		cmd.Stderr, cmd.Stdout = logs, logs
		testenv.Must(t, cmd.Start(), "starting "+name)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
			}
		})
		waitReady(t, "http://"+addr+"/readyz", done)
	}
	apiAddr := freeAddr(t)
	// Each service as its own least-privilege role, so the flow also proves the grants are
	// enough (and the migration's publication is the one capture uses).
	as := func(role string) string { return "DATABASE_URL=" + testenv.AsRole(t, dsn, role) }
	start("api", apiAddr, "OPS_ADDR="+freeAddr(t), as("orderflow_api"))
	start("capture", freeAddr(t), as("orderflow_capture"), "CAPTURE_SLOT="+slot, "CAPTURE_PUBLICATION=orderflow_outbox",
		"CAPTURE_TOPIC_PREFIX="+prefix, "CAPTURE_PARTITIONS=1")
	start("deliver", freeAddr(t), as("orderflow_deliver"), "DELIVER_TOPIC="+prefix+".order", "DELIVER_GROUP="+prefix,
		"DELIVER_BASE_BACKOFF=50ms", "DELIVER_POLL=50ms")
	start("project", freeAddr(t), as("orderflow_projector"), "PROJECT_TOPIC="+prefix+".order", "PROJECT_GROUP="+prefix+"_project")
	start("reconcile", freeAddr(t), as("orderflow_reconcile"), "RECONCILE_EVERY=1s", "RECONCILE_FIX=true")
	t.Cleanup(func() {
		client := &kafka.Client{Addr: kafka.TCP(strings.Split(brokers, ",")...), Timeout: 20 * time.Second}
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{prefix + ".order.dlq"}})
	})

	call := func(method, path, key, body string, headers ...string) (int, map[string]any) {
		req, err := http.NewRequest(method, "http://"+apiAddr+path, strings.NewReader(body))
		testenv.Must(t, err, "building a request")
		req.Header.Set("Authorization", "Bearer "+key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		testenv.Must(t, err, method+" "+path)
		defer resp.Body.Close()
		var m map[string]any
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	partnerAddr := freeAddr(t)
	status, ep := call(http.MethodPost, "/v1/admin/endpoints", adminKey,
		`{"url": "http://`+partnerAddr+`/partner-hook", "event_types": ["order.created"]}`, "Idempotency-Key", "register-1")
	if status != http.StatusCreated {
		t.Fatalf("registering the partner: %d %v", status, ep)
	}
	secret := ep["secret"].(string)
	status, rot := call(http.MethodPost, "/v1/admin/endpoints/"+ep["id"].(string)+"/rotate-secret", adminKey, `{"grace_seconds": 3600}`)
	if status != http.StatusOK {
		t.Fatalf("rotating: %d %v", status, rot)
	}
	rotated := rot["secret"].(string)
	start("partner", partnerAddr, as("orderflow_partner"), "WEBHOOK_SECRET="+secret+","+rotated, "API_URL=http://"+apiAddr,
		"PARTNER_API_KEY="+partnerKey, "PARTNER_FULFILL_DELAY=50ms")

	// Refused keys: a near miss of a real one, another role's, a made-up one.
	nearMiss := clientKey[:len(clientKey)-1] + "x"
	for _, k := range []string{nearMiss, partnerKey, "of_madeup"} {
		call(http.MethodPost, "/v1/orders", k, `{}`, "Idempotency-Key", "x")
	}
	if s, _ := call(http.MethodPut, "/v1/inventory/SKU-L", adminKey, `{"stock": 100}`); s != http.StatusOK {
		t.Fatalf("stocking: %d", s)
	}
	var ids []string
	for i := 0; i < 3; i++ {
		s, o := call(http.MethodPost, "/v1/orders", clientKey,
			`{"customer_id": "c", "currency": "EUR", "items": [{"sku": "SKU-L", "quantity": 1, "unit_price_cents": 100}]}`,
			"Idempotency-Key", fmt.Sprint("order-", i))
		if s != http.StatusCreated {
			t.Fatalf("creating an order: %d %v", s, o)
		}
		ids = append(ids, o["id"].(string))
	}
	// A forged webhook at the partner.
	req, _ := http.NewRequest(http.MethodPost, "http://"+partnerAddr+"/partner-hook", strings.NewReader(`{}`))
	req.Header.Set("webhook-id", "forged")
	req.Header.Set("webhook-timestamp", fmt.Sprint(time.Now().Unix()))
	req.Header.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString([]byte(secret)))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, id := range ids {
		for {
			// Fulfilled through the partner, and the read model (the projector's role) caught up.
			if _, o := call(http.MethodGet, "/v1/orders/"+id+"/summary", clientKey, ""); o["data"] != nil &&
				o["data"].(map[string]any)["status"] == "fulfilled" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("order %s not fulfilled through the partner and projected within 90 s", id)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	text := logs.String()
	for _, denied := range []string{"permission denied", "42501"} {
		if strings.Contains(text, denied) {
			t.Errorf("a service's role lacks a grant it needs:\n%s", text)
		}
	}
	if !strings.Contains(text, `"component":"partner"`) || !strings.Contains(text, "created api key") {
		t.Fatalf("the logs were not captured:\n%s", text)
	}
	needles := map[string]string{"the key ring": base64.StdEncoding.EncodeToString(ringKey)}
	for name, k := range map[string]string{"client key": clientKey, "fulfiller key": partnerKey, "admin key": adminKey, "refused key": nearMiss} {
		needles[name] = k
		needles[name+" without its prefix"] = strings.TrimPrefix(k, "of_")
	}
	for name, s := range map[string]string{"secret": secret, "rotated secret": rotated} {
		needles[name] = s
		needles[name+" without its prefix"] = strings.TrimPrefix(s, "whsec_")
	}
	for _, line := range strings.Split(text, "\n") {
		for name, n := range needles {
			if strings.Contains(line, n) {
				t.Errorf("a log line holds the %s: %s", name, line)
			}
		}
	}
}
