package main

import (
	"flag"
	"fmt"

	"orderflow/internal/egress"
	"orderflow/internal/secretbox"
)

// webhookFlags are the webhook safety settings the api and deliver commands share: where
// endpoints may point, and the key ring that keeps their secrets encrypted at rest.
type webhookFlags struct {
	allow, keyring, keyringFile *string
}

func addWebhookFlags(fs *flag.FlagSet, getenv func(string) string) *webhookFlags {
	return &webhookFlags{
		allow: fs.String("webhook-allow", getenv("WEBHOOK_ALLOW"),
			"comma-separated hosts, addresses and CIDRs webhook endpoints may use besides public https ones, e.g. 127.0.0.1 for a local partner (env WEBHOOK_ALLOW)"),
		keyring: fs.String("webhook-keyring", getenv("WEBHOOK_KEYRING"),
			"key ring encrypting webhook secrets at rest: id:base64key entries, the active one marked '*' (env WEBHOOK_KEYRING; docs/WEBHOOKS.md)"),
		keyringFile: fs.String("webhook-keyring-file", getenv("WEBHOOK_KEYRING_FILE"),
			"file holding the key ring instead (env WEBHOOK_KEYRING_FILE)"),
	}
}

// policy is the egress policy; a malformed allowlist is a usage error.
func (f *webhookFlags) policy() (egress.Policy, error) {
	p, err := egress.NewPolicy(splitList(*f.allow)...)
	if err != nil {
		return egress.Policy{}, fmt.Errorf("%w: -webhook-allow (WEBHOOK_ALLOW): %v", errUsage, err)
	}
	return p, nil
}

// ring is the key ring, or nil when none is configured. A ring that is set but unreadable is
// an error: a setting the operator believes is in force must be in force.
func (f *webhookFlags) ring() (*secretbox.Ring, error) {
	if *f.keyring == "" && *f.keyringFile == "" {
		return nil, nil
	}
	r, err := secretbox.Load(*f.keyring, *f.keyringFile)
	if err != nil {
		return nil, fmt.Errorf("%w: webhook key ring (WEBHOOK_KEYRING or WEBHOOK_KEYRING_FILE): %v", errUsage, err)
	}
	return r, nil
}
