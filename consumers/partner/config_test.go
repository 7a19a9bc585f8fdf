package partner

import (
	"context"
	"strings"
	"testing"

	"orderflow/webhook"
)

func TestNewNamesAMalformedSecretWithoutPrintingIt(t *testing.T) {
	t.Parallel()
	good, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	const bad = "whsec_not base64!"
	_, err = New(context.Background(), Config{DatabaseURL: "postgres://unused", APIURL: "http://unused", Secrets: []string{good, bad}})
	if err == nil {
		t.Fatal("New accepted a malformed webhook secret")
	}
	if !strings.Contains(err.Error(), "secret 2 of 2") {
		t.Errorf("error %q does not say which secret is malformed", err)
	}
	if strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), good) {
		t.Errorf("error %q prints a secret", err)
	}
}
