package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEnvDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		value   string
		read    func(e *envDefaults) any
		want    any
		wantErr string // empty: no error
	}{
		{"unset int takes the default", "", func(e *envDefaults) any { return e.Int("V", 7) }, 7, ""},
		{"int", "42", func(e *envDefaults) any { return e.Int("V", 7) }, 42, ""},
		{"malformed int", "abc", func(e *envDefaults) any { return e.Int("V", 7) }, 7, `V="abc": not an integer`},
		{"fractional int", "1.5", func(e *envDefaults) any { return e.Int("V", 7) }, 7, `V="1.5": not an integer`},
		{"unset float takes the default", "", func(e *envDefaults) any { return e.Float("V", 0.5) }, 0.5, ""},
		{"float", "0.25", func(e *envDefaults) any { return e.Float("V", 0.5) }, 0.25, ""},
		{"malformed float", "a lot", func(e *envDefaults) any { return e.Float("V", 0.5) }, 0.5, `V="a lot": not a number`},
		{"unset duration takes the default", "", func(e *envDefaults) any { return e.Duration("V", time.Second) }, time.Second, ""},
		{"duration", "250ms", func(e *envDefaults) any { return e.Duration("V", time.Second) }, 250 * time.Millisecond, ""},
		{"duration without a unit", "10", func(e *envDefaults) any { return e.Duration("V", time.Second) }, time.Second, `V="10": not a duration`},
		{"unset bool takes the default", "", func(e *envDefaults) any { return e.Bool("V", false) }, false, ""},
		{"bool", "true", func(e *envDefaults) any { return e.Bool("V", false) }, true, ""},
		{"malformed bool", "yes please", func(e *envDefaults) any { return e.Bool("V", false) }, false, `V="yes please": not a boolean`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvDefaults(func(name string) string {
				if name == "V" {
					return tt.value
				}
				return ""
			})
			if got := tt.read(e); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			err := e.err()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("err = %v, want none", err)
			case tt.wantErr != "" && (!errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want a usage error containing %q", err, tt.wantErr)
			}
		})
	}
}

// Every command that takes environment defaults refuses a malformed one, naming it, before it
// looks at anything else.
func TestCommandsRejectAMalformedEnvironmentValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cmd, name, value string
	}{
		{"capture", "CAPTURE_PARTITIONS", "six"},
		{"capture", "CAPTURE_LINGER", "3"},
		{"capture", "CAPTURE_RETENTION", "7"},
		{"project", "PROJECT_BATCH_SIZE", "abc"},
		{"project", "PROJECT_COMMIT_INTERVAL", "soon"},
		{"deliver", "DELIVER_MAX_ATTEMPTS", "abc"},
		{"deliver", "DELIVER_TIMEOUT", "5"},
		{"deliver", "DELIVER_AUTO_DISABLE_AFTER", "5 days"},
		{"migrate-data", "MIGRATE_DATA_BATCH_SIZE", "big"},
		{"migrate-data", "MIGRATE_DATA_LOCK_TIMEOUT", "2"},
		{"partner", "PARTNER_REJECT_RATIO", "half"},
		{"partner", "PARTNER_FULFILL_DELAY", "1"},
		{"reconcile", "RECONCILE_EVERY", "hourly"},
		{"reconcile", "RECONCILE_FIX", "maybe"},
		{"project", "PROJECT_RETAIN_DEAD_LETTERS", "14d"},
		{"deliver", "DELIVER_RETAIN_SUCCEEDED", "3 days"},
		{"deliver", "DELIVER_PURGE_BATCH", "many"},
		{"partner", "PARTNER_RETAIN_RECEIPTS", "16"},
		{"partner", "PARTNER_CALLBACK_MAX_AGE", "long"},
		{"reconcile", "RECONCILE_DELIVERY_HORIZON", "1 day"},
		{"reconcile", "RECONCILE_REPAIR_GRACE", "10"},
		{"reconcile", "RECONCILE_FULL_SCAN_EVERY", "daily"},
		{"reconcile", "RECONCILE_RETAIN_REPAIRS", "a month"},
	}
	for _, tt := range tests {
		t.Run(tt.cmd+" "+tt.name, func(t *testing.T) {
			t.Parallel()
			getenv := func(name string) string {
				if name == tt.name {
					return tt.value
				}
				return ""
			}
			err := run(context.Background(), []string{tt.cmd}, getenv, &bytes.Buffer{}, &bytes.Buffer{})
			want := tt.name + `="` + tt.value + `"`
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s with %s=%q: %v, want a usage error naming %s", tt.cmd, tt.name, tt.value, err, want)
			}
		})
	}
}
