package postgres_test

import (
	"context"
	"testing"

	"orderflow/internal/secretbox"
	"orderflow/internal/testenv"
)

const (
	keyA = "a:MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
	keyB = "b:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
)

// TestOldPlainSecretsAreSealedAndOldKeysRetired: secrets stored before encryption at rest are
// sealed by the first API start with a key ring; after a key rotation they are re-sealed under
// the new key, so the old one can leave the ring; a ring missing a key leaves those rows alone.
func TestOldPlainSecretsAreSealedAndOldKeysRetired(t *testing.T) {
	t.Parallel()
	db, dsn := mustDB(t)
	ctx := context.Background()
	c := testenv.Connect(t, dsn)
	const plain = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	ep, err := db.CreateEndpoint(ctx, "https://partner.example/hook", []string{"*"}, plain)
	testenv.Must(t, err, "creating an endpoint the old way")

	stored := func() (secret string, keyID *string) {
		testenv.Must(t, c.QueryRow(ctx, `SELECT secret, secret_key_id FROM webhook_endpoints WHERE id = $1`, ep.ID).Scan(&secret, &keyID), "reading")
		return secret, keyID
	}
	ringA, err := secretbox.Parse(keyA)
	testenv.Must(t, err, "ring a")
	n, bad, err := db.SealEndpointSecrets(ctx, ringA)
	testenv.Must(t, err, "sealing")
	s, id := stored()
	if n != 1 || bad != 0 || s == plain || id == nil || *id != "a" {
		t.Fatalf("sealed %d (unreadable %d); stored %.10s… under key %v", n, bad, s, id)
	}
	if got, err := ringA.Open(s); err != nil || string(got) != plain {
		t.Fatalf("the sealed secret opens to %q, %v", got, err)
	}
	if n, _, _ := db.SealEndpointSecrets(ctx, ringA); n != 0 {
		t.Fatalf("a second run rewrote %d endpoints, want none", n)
	}

	ringBA, err := secretbox.Parse("*" + keyB + "\n" + keyA)
	testenv.Must(t, err, "ring b, a")
	n, _, err = db.SealEndpointSecrets(ctx, ringBA)
	testenv.Must(t, err, "re-sealing")
	s, id = stored()
	if n != 1 || *id != "b" {
		t.Fatalf("re-sealed %d, key %v, want the row under key b", n, *id)
	}
	ringB, err := secretbox.Parse(keyB)
	testenv.Must(t, err, "ring b")
	if got, err := ringB.Open(s); err != nil || string(got) != plain {
		t.Fatalf("after rotation the secret opens with the new key alone to %q, %v", got, err)
	}

	if n, bad, err := db.SealEndpointSecrets(ctx, ringA); err != nil || n != 0 || bad != 1 {
		t.Fatalf("a ring without the key: sealed %d, unreadable %d, %v; want the row reported and left alone", n, bad, err)
	}
	if after, _ := stored(); after != s {
		t.Fatal("a ring without the key rewrote the secret")
	}
}
