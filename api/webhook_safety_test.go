package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"orderflow/api"
	"orderflow/internal/testenv"
)

func endpointBody(url string) string {
	return `{"url": ` + jsonString(url) + `, "event_types": ["order.created"]}`
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteString(`\` + string(r))
		case r < 0x20:
			b.WriteString(`\u00` + "0123456789abcdef"[r>>4:r>>4+1] + "0123456789abcdef"[r&15:r&15+1])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// TestEndpointURLsAreCheckedAtRegistration: every address the policy refuses, in every
// spelling, is a 422 whose type names the reason; nothing is stored; valid unusual spellings
// are stored normalized. The default policy of a real deployment allows no loopback, so this
// test's API has none allowed either.
func TestEndpointURLsAreCheckedAtRegistration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	strict := httptest.NewServer(api.New(e.db, slog.New(slog.NewTextHandler(io.Discard, nil)), api.WithSecrets(e.ring)))
	t.Cleanup(strict.Close)
	e.url = strict.URL

	refused := []struct{ name, url, problem string }{
		{"plain http", "http://partner.example/hook", "endpoint-scheme-not-https"},
		{"ftp", "ftp://partner.example/hook", "endpoint-scheme-not-https"},
		{"javascript", "javascript:alert(1)", "endpoint-invalid-url"},
		{"relative", "/hook", "endpoint-invalid-url"},
		{"port out of range", "https://partner.example:70000/hook", "endpoint-invalid-url"},
		{"credentials", "https://user:pass@partner.example/hook", "endpoint-credentials-in-url"},
		{"user only", "https://user@partner.example/hook", "endpoint-credentials-in-url"},
		{"metadata address", "https://169.254.169.254/latest/meta-data/", "endpoint-metadata-address"},
		{"metadata name", "https://metadata.google.internal/computeMetadata/v1/", "endpoint-metadata-address"},
		{"metadata IPv6", "https://[fd00:ec2::254]/", "endpoint-metadata-address"},
		{"loopback", "https://127.0.0.1/hook", "endpoint-private-address"},
		{"loopback short", "https://127.1/hook", "endpoint-private-address"},
		{"loopback decimal", "https://2130706433/hook", "endpoint-private-address"},
		{"loopback hex", "https://0x7f000001/hook", "endpoint-private-address"},
		{"loopback octal", "https://0177.0.0.1/hook", "endpoint-private-address"},
		{"loopback mapped IPv6", "https://[::ffff:127.0.0.1]/hook", "endpoint-private-address"},
		{"loopback IPv6", "https://[::1]/hook", "endpoint-private-address"},
		{"localhost", "https://localhost/hook", "endpoint-private-address"},
		{"localhost trailing dot", "https://LOCALHOST./hook", "endpoint-private-address"},
		{"sub.localhost", "https://a.localhost/hook", "endpoint-private-address"},
		{"unspecified", "https://0.0.0.0/hook", "endpoint-private-address"},
		{"private 10/8", "https://10.1.2.3/hook", "endpoint-private-address"},
		{"private 192.168", "https://192.168.0.10/hook", "endpoint-private-address"},
		{"link-local", "https://169.254.10.10/hook", "endpoint-private-address"},
		{"unique-local", "https://[fd12:3456::1]/hook", "endpoint-private-address"},
		{"IPv6 link-local with zone", "https://[fe80::1%25eth0]/hook", "endpoint-invalid-host"},
		{"IPv6 link-local", "https://[fe80::1]/hook", "endpoint-private-address"},
		{"multicast", "https://224.0.0.1/hook", "endpoint-private-address"},
		{"NAT64 of loopback", "https://[64:ff9b::7f00:1]/hook", "endpoint-private-address"},
		{"malformed address", "https://1.2.3.256/hook", "endpoint-invalid-host"},
		{"unicode digits", "https://１２７.０.０.１/hook", "endpoint-invalid-host"},
		{"NUL in the URL", "https://partner.example/ho\x00ok", "validation-failed"},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			r := e.admin(http.MethodPost, "/v1/admin/endpoints", endpointBody(c.url))
			mustStatus(t, r, http.StatusUnprocessableEntity, c.problem)
			if !strings.Contains(string(r.body), `"pointer":"/url"`) {
				t.Errorf("the problem does not name the url field: %s", r.body)
			}
		})
	}
	if n := e.count("webhook_endpoints"); n != 0 {
		t.Fatalf("%d endpoints stored after refusals", n)
	}

	for spelling, stored := range map[string]string{
		"HTTPS://Partner.Example./hook":    "https://partner.example/hook",
		" https://partner.example:8443/h ": "https://partner.example:8443/h",
		"https://[2606:4700::1111]/hook":   "https://[2606:4700::1111]/hook",
	} {
		r := e.admin(http.MethodPost, "/v1/admin/endpoints", endpointBody(spelling))
		mustStatus(t, r, http.StatusCreated, "")
		if got := r.json(t)["url"]; got != stored {
			t.Errorf("%q stored as %v, want %q", spelling, got, stored)
		}
	}
}

// TestWebhookSecretsAreEncryptedAtRest: the database holds neither the secret nor the answer
// that showed it in clear; a retried create or rotate with the same Idempotency-Key answers
// with the same secret and acts once; an API without a key ring refuses rather than store a
// secret in clear.
func TestWebhookSecretsAreEncryptedAtRest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	create := func() reply {
		return e.do(http.MethodPost, "/v1/admin/endpoints", endpointBody("https://partner.example/hook"),
			append(as(adminKey), "Idempotency-Key", "create-1")...)
	}
	first, again := create(), create()
	mustStatus(t, first, http.StatusCreated, "")
	mustStatus(t, again, http.StatusCreated, "")
	if again.header.Get("Idempotent-Replayed") != "true" || string(again.body) != string(first.body) {
		t.Fatalf("the retried create answered %s, want the first answer %s replayed", again.body, first.body)
	}
	if n := e.count("webhook_endpoints"); n != 1 {
		t.Fatalf("%d endpoints after a retried create, want 1", n)
	}
	ep := first.json(t)
	id, secret := ep["id"].(string), ep["secret"].(string)

	rotate := func() reply {
		return e.do(http.MethodPost, "/v1/admin/endpoints/"+id+"/rotate-secret", `{"grace_seconds": 60}`,
			append(as(adminKey), "Idempotency-Key", "rotate-1")...)
	}
	r1, r2 := rotate(), rotate()
	mustStatus(t, r1, http.StatusOK, "")
	rotated := r1.json(t)["secret"].(string)
	if r2.json(t)["secret"] != rotated || rotated == secret {
		t.Fatalf("rotations answered %s and %s", r1.body, r2.body)
	}
	// One rotation: the first secret is still the previous one, not pushed out by a second.
	var stored, previous, keyID string
	testenv.Must(t, e.sql.QueryRow(ctx, `SELECT secret, previous_secret, secret_key_id FROM webhook_endpoints WHERE id = $1`, id).
		Scan(&stored, &previous, &keyID), "reading the stored secrets")
	opened, err := e.ring.Open(previous)
	testenv.Must(t, err, "opening the previous secret")
	if string(opened) != secret {
		t.Fatal("a retried rotation rotated twice: the first secret is no longer the previous one")
	}
	if !strings.HasPrefix(stored, "v1:test:") || keyID != "test" {
		t.Fatalf("stored secret %.12s… key id %q, want sealed under key test", stored, keyID)
	}
	for _, plain := range []string{secret, rotated, strings.TrimPrefix(secret, "whsec_"), strings.TrimPrefix(rotated, "whsec_")} {
		if n := testenv.Count(t, e.sql, `SELECT count(*) FROM webhook_endpoints
			WHERE position($1 in secret || coalesce(previous_secret, '')) > 0`, plain); n != 0 {
			t.Fatal("a secret is stored in clear in webhook_endpoints")
		}
		if n := testenv.Count(t, e.sql, `SELECT count(*) FROM idempotency_keys
			WHERE position(convert_to($1, 'UTF8') in coalesce(response_body, '')) > 0`, plain); n != 0 {
			t.Fatal("a secret is stored in clear with an idempotency key")
		}
	}

	noRing := httptest.NewServer(api.New(e.db, slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(noRing.Close)
	e.url = noRing.URL
	mustStatus(t, e.admin(http.MethodPost, "/v1/admin/endpoints", endpointBody("https://other.example/hook")),
		http.StatusServiceUnavailable, "webhook-secrets-unavailable")
	mustStatus(t, e.admin(http.MethodPost, "/v1/admin/endpoints/"+id+"/rotate-secret", ""),
		http.StatusServiceUnavailable, "webhook-secrets-unavailable")
	if n := e.count("webhook_endpoints"); n != 1 {
		t.Fatalf("%d endpoints, want 1", n)
	}
}

// TestCredentialsInOldEndpointURLsAreRedacted: an endpoint registered before credentials were
// refused never shows them in a listing.
func TestCredentialsInOldEndpointURLsAreRedacted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.sql.Exec(ctx, `INSERT INTO webhook_endpoints (url, event_types, secret)
		VALUES ('https://bob:hunter2@partner.example/hook', '{order.created}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')`)
	testenv.Must(t, err, "inserting an old endpoint")
	_, err = e.sql.Exec(ctx, `INSERT INTO webhook_deliveries (event_id, endpoint_id, event_type, subject, payload, state, dead_at, last_error)
		SELECT 'ev-1', id, 'order.created', 'o-1', '{}', 'dead', now(), 'Post "https://bob:hunter2@partner.example/hook": EOF'
		FROM webhook_endpoints`)
	testenv.Must(t, err, "inserting a dead letter")
	for _, path := range []string{"/v1/admin/endpoints", "/v1/admin/dead-letters"} {
		r := e.admin(http.MethodGet, path, "")
		mustStatus(t, r, http.StatusOK, "")
		if strings.Contains(string(r.body), "hunter2") || !strings.Contains(string(r.body), "redacted@partner.example") {
			t.Errorf("%s shows %s", path, r.body)
		}
	}
}
