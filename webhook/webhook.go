// Package webhook is the Standard Webhooks signature scheme (https://www.standardwebhooks.com/):
// whsec_ secrets, the v1 HMAC-SHA256 signature over "id.timestamp.body" and the receiver's
// check. It uses the standard library only, so the sender, the API and a receiver can all
// import it without importing each other.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks headers. The id stays the same on every attempt, so receivers can use it
// as their idempotency key; the timestamp is fresh on every attempt and signed with the body,
// so a captured request cannot be replayed later.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix marks a symmetric Standard Webhooks secret; the rest is base64.
const SecretPrefix = "whsec_"

// secretBytes is the size of generated secrets: the spec asks for 24 to 64 random bytes.
const secretBytes = 32

// Errors a receiver gets from Verify. They are sentinels so a receiver can count them by kind
// without ever logging the signature itself.
var (
	ErrMissingHeaders   = errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	ErrBadTimestamp     = errors.New("webhook-timestamp is not a unix time")
	ErrTimestampTooOld  = errors.New("webhook-timestamp outside the tolerance")
	ErrNoValidSignature = errors.New("no valid signature")
)

// NewSecret returns a fresh random secret in whsec_ form.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating webhook secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// secretKey decodes a secret to the HMAC key. The prefix is optional, as in the reference
// libraries, so a secret pasted without it still works.
func secretKey(secret string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(k) == 0 {
		return nil, errors.New("webhook secret is not whsec_<base64>")
	}
	return k, nil
}

// ValidSecret reports whether s is a usable whsec_ secret.
func ValidSecret(s string) bool {
	_, err := secretKey(s)
	return err == nil && strings.HasPrefix(s, SecretPrefix)
}

func sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Sign returns the "v1,<base64 HMAC-SHA256(id.timestamp.body)>" signature of one message.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	k, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + sign(k, id, ts.Unix(), body), nil
}

// SignatureHeader signs with every secret and joins the signatures with spaces: during a
// rotation the receiver may still hold the previous secret, and any one match is enough.
func SignatureHeader(secrets []string, id string, ts time.Time, body []byte) (string, error) {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		sig, err := Sign(s, id, ts, body)
		if err != nil {
			return "", err
		}
		sigs = append(sigs, sig)
	}
	return strings.Join(sigs, " "), nil
}

// Verify checks a received message as a Standard Webhooks receiver must: the timestamp within
// tolerance of now (against replays of captured requests), then any v1 signature in the
// header matching any of the receiver's secrets, compared in constant time. A malformed
// secret is skipped, not an error: it cannot have signed anything.
func Verify(secrets []string, id, timestamp, signatures string, body []byte, now time.Time, tolerance time.Duration) error {
	if id == "" || timestamp == "" || signatures == "" {
		return ErrMissingHeaders
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrBadTimestamp
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrTimestampTooOld
	}
	for _, s := range secrets {
		k, err := secretKey(s)
		if err != nil {
			// A malformed secret can match nothing; skipping it lets a receiver with one bad
			// secret among good ones still accept what the good ones signed. Receivers
			// check their secrets with ValidSecret when they start.
			continue
		}
		want := []byte(sign(k, id, ts, body))
		for _, sig := range strings.Fields(signatures) {
			version, value, ok := strings.Cut(sig, ",")
			if ok && version == "v1" && hmac.Equal([]byte(value), want) {
				return nil
			}
		}
	}
	return ErrNoValidSignature
}
