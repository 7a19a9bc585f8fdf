package webhook

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The published Standard Webhooks test vector (the reference libraries' "sign function works"
// test in github.com/standard-webhooks/standard-webhooks).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignMatchesThePublishedVector(t *testing.T) {
	t.Parallel()
	got, err := Sign(vectorSecret, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSignature {
		t.Fatalf("signature %q, want %q", got, vectorSignature)
	}
	// The prefix is optional when decoding, as in the reference libraries.
	if got, _ := Sign(strings.TrimPrefix(vectorSecret, SecretPrefix), vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload)); got != vectorSignature {
		t.Fatalf("without prefix: %q", got)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	ts := time.Unix(vectorTimestamp, 0)
	other, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := SignatureHeader([]string{other, vectorSecret}, vectorID, ts, []byte(vectorPayload))
	if err != nil {
		t.Fatal(err)
	}
	tsHeader := "1614265330"
	cases := []struct {
		name    string
		secrets []string
		id, ts  string
		sig     string
		body    string
		now     time.Time
		want    error
	}{
		{"vector", []string{vectorSecret}, vectorID, tsHeader, vectorSignature, vectorPayload, ts, nil},
		{"within tolerance", []string{vectorSecret}, vectorID, tsHeader, vectorSignature, vectorPayload, ts.Add(4 * time.Minute), nil},
		{"too old", []string{vectorSecret}, vectorID, tsHeader, vectorSignature, vectorPayload, ts.Add(6 * time.Minute), ErrTimestampTooOld},
		{"from the future", []string{vectorSecret}, vectorID, tsHeader, vectorSignature, vectorPayload, ts.Add(-6 * time.Minute), ErrTimestampTooOld},
		{"bad timestamp", []string{vectorSecret}, vectorID, "soon", vectorSignature, vectorPayload, ts, ErrBadTimestamp},
		{"missing id", []string{vectorSecret}, "", tsHeader, vectorSignature, vectorPayload, ts, ErrMissingHeaders},
		{"missing signature", []string{vectorSecret}, vectorID, tsHeader, "", vectorPayload, ts, ErrMissingHeaders},
		{"tampered body", []string{vectorSecret}, vectorID, tsHeader, vectorSignature, `{"test": 2432232315}`, ts, ErrNoValidSignature},
		{"other id", []string{vectorSecret}, "msg_other", tsHeader, vectorSignature, vectorPayload, ts, ErrNoValidSignature},
		{"wrong secret", []string{other}, vectorID, tsHeader, vectorSignature, vectorPayload, ts, ErrNoValidSignature},
		{"v2 label ignored", []string{vectorSecret}, vectorID, tsHeader, "v2" + strings.TrimPrefix(vectorSignature, "v1"), vectorPayload, ts, ErrNoValidSignature},
		{"one of several matches", []string{vectorSecret}, vectorID, tsHeader, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " + vectorSignature, vectorPayload, ts, nil},
		{"rotation: receiver still on the old secret", []string{vectorSecret}, vectorID, tsHeader, rotated, vectorPayload, ts, nil},
		{"rotation: receiver already on the new secret", []string{other}, vectorID, tsHeader, rotated, vectorPayload, ts, nil},
		{"truncated signature", []string{vectorSecret}, vectorID, tsHeader, vectorSignature[:8], vectorPayload, ts, ErrNoValidSignature},
		{"malformed secret skipped, good one verifies", []string{"whsec_not base64!", vectorSecret}, vectorID, tsHeader, vectorSignature, vectorPayload, ts, nil},
		{"good secret after an empty one", []string{"", vectorSecret}, vectorID, tsHeader, vectorSignature, vectorPayload, ts, nil},
		{"only malformed secrets", []string{"whsec_not base64!"}, vectorID, tsHeader, vectorSignature, vectorPayload, ts, ErrNoValidSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := Verify(c.secrets, c.id, c.ts, c.sig, []byte(c.body), c.now, 5*time.Minute)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify: %v, want %v", err, c.want)
			}
		})
	}
}

func TestNewSecretIsWhsecWithEnoughEntropy(t *testing.T) {
	t.Parallel()
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret()
	k, err := secretKey(a)
	if !strings.HasPrefix(a, SecretPrefix) || err != nil || len(k) < 24 || a == b || !ValidSecret(a) {
		t.Fatalf("secret %q (%d bytes, %v), second %q", a, len(k), err, b)
	}
	if ValidSecret("whsec_not base64!") || ValidSecret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") {
		t.Fatal("ValidSecret accepted a malformed secret")
	}
}
