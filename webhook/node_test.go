package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// requireTool finds a program for the independent check. Outside CI a missing one skips the
// test; in CI it fails it, so CI never passes without the cross-check.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found: the signature cross-check needs Node.js and npm in CI", name)
	}
	t.Skipf("%s not found: install Node.js 18+ to cross-check signatures with the standardwebhooks package", name)
	return ""
}

// nodeChecker installs the reference library (pinned by package-lock.json) once and returns
// a function that runs testdata/node/check.js.
func nodeChecker(t *testing.T) func(req any) nodeResult {
	t.Helper()
	node := requireTool(t, "node")
	dir, err := filepath.Abs(filepath.Join("testdata", "node"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "standardwebhooks", "package.json")); err != nil {
		npm := requireTool(t, "npm")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, npm, "ci", "--prefix", dir, "--no-audit", "--no-fund").CombinedOutput()
		if err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	return func(req any) nodeResult {
		t.Helper()
		in, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(node, filepath.Join(dir, "check.js"))
		cmd.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node check.js: %v\n%s", err, stderr.String())
		}
		var res nodeResult
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("node check.js printed %q: %v", out, err)
		}
		return res
	}
}

type nodeVerify struct {
	Secret  string            `json:"secret"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

type nodeSign struct {
	Secret    string `json:"secret"`
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"`
	Body      string `json:"body"`
}

type nodeResult struct {
	Verify []*string `json:"verify"`
	Sign   []string  `json:"sign"`
}

// TestSignaturesVerifyWithTheReferenceLibrary has the Standard Webhooks reference library
// (npm standardwebhooks) verify the headers a sender builds with this package, including both
// signatures of a rotation and a body that is not ASCII; then the library signs and Go
// verifies. The deliverer's tests check that what goes over the wire is exactly these headers
// and the payload's bytes.
func TestSignaturesVerifyWithTheReferenceLibrary(t *testing.T) {
	t.Parallel()
	check := nodeChecker(t)
	current, previous := mustNewSecret(t), mustNewSecret(t)
	const id = "0192d1e4-7a8b-7c3d-9e0f-123456789abc"
	body := []byte(`{"specversion":"1.0","id":"0192d1e4-7a8b-7c3d-9e0f-123456789abc","type":"order.created","subject":"o-1","data":{"customer_id":"Zoë – 東京","items":[{"sku":"A\nB","quantity":1}]}}`)
	var verify []nodeVerify
	for _, secrets := range [][]string{{current}, {current, previous}} {
		now := time.Now()
		sig, err := SignatureHeader(secrets, id, now, body)
		if err != nil {
			t.Fatal(err)
		}
		headers := map[string]string{HeaderID: id, HeaderTimestamp: strconv.FormatInt(now.Unix(), 10), HeaderSignature: sig}
		for _, secret := range secrets {
			verify = append(verify, nodeVerify{Secret: secret, Headers: headers, Body: string(body)})
		}
	}
	last := verify[len(verify)-1]
	// Negative controls: the library must reject what is wrong, or the positives prove nothing.
	verify = append(verify,
		nodeVerify{Secret: mustNewSecret(t), Headers: last.Headers, Body: last.Body},
		nodeVerify{Secret: current, Headers: last.Headers, Body: last.Body + " "},
	)
	signedAt := time.Now().Unix()
	res := check(map[string]any{"verify": verify, "sign": []nodeSign{
		{Secret: vectorSecret, ID: vectorID, Timestamp: vectorTimestamp, Body: vectorPayload},
		{Secret: current, ID: "evt_1", Timestamp: signedAt, Body: string(body)},
	}})
	if len(res.Verify) != len(verify) {
		t.Fatalf("node answered %d verifications, want %d", len(res.Verify), len(verify))
	}
	for i, errText := range res.Verify {
		wantOK := i < len(verify)-2
		if ok := errText == nil; ok != wantOK {
			msg := "ok"
			if errText != nil {
				msg = *errText
			}
			t.Errorf("verification %d: node says %q, want ok=%v", i, msg, wantOK)
		}
	}
	if res.Sign[0] != vectorSignature {
		t.Errorf("node signs the published vector as %q, want %q", res.Sign[0], vectorSignature)
	}
	if err := Verify([]string{current}, "evt_1", strconv.FormatInt(signedAt, 10), res.Sign[1], body, time.Unix(signedAt, 0), time.Minute); err != nil {
		t.Errorf("Go does not verify the library's signature: %v", err)
	}
}

func mustNewSecret(t *testing.T) string {
	t.Helper()
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
