package secretbox

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func key(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

func mustParse(tb testing.TB, text string) *Ring {
	tb.Helper()
	r, err := Parse(text)
	if err != nil {
		tb.Fatalf("parsing ring: %v", err)
	}
	return r
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	r := mustParse(t, "k1:"+key(1))
	for _, pt := range []string{"", "whsec_abc", strings.Repeat("x", 4096), "\x00\xff"} {
		s, err := r.Seal([]byte(pt))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(s, "v1:k1:") || strings.Contains(s, pt) && pt != "" {
			t.Fatalf("sealed value %q", s)
		}
		got, err := r.Open(s)
		if err != nil || string(got) != pt {
			t.Fatalf("Open = %q, %v; want %q", got, err, pt)
		}
	}
	a, _ := r.Seal([]byte("same"))
	b, _ := r.Seal([]byte("same"))
	if a == b {
		t.Fatal("two seals of the same secret are equal: the nonce is not random")
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		text   string
		active string
		ok     bool
	}{
		{"first is active", "a:" + key(1) + "\nb:" + key(2), "a", true},
		{"marked is active", "a:" + key(1) + "\n*b:" + key(2), "b", true},
		{"comma separated env value", "a:" + key(1) + ",*b:" + key(2), "b", true},
		{"comments and blanks", "# ring\n\n  a:" + key(1) + "  \n", "a", true},
		{"unpadded base64", "a:" + strings.TrimRight(key(1), "="), "a", true},
		{"empty", " \n# nothing\n", "", false},
		{"no colon", key(1), "", false},
		{"short key", "a:" + base64.StdEncoding.EncodeToString([]byte("short")), "", false},
		{"not base64", "a:!!!!", "", false},
		{"bad id", "a/b:" + key(1), "", false},
		{"duplicate id", "a:" + key(1) + "\na:" + key(2), "", false},
		{"two active", "*a:" + key(1) + "\n*b:" + key(2), "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r, err := Parse(c.text)
			if (err == nil) != c.ok {
				t.Fatalf("Parse: %v, want ok=%v", err, c.ok)
			}
			if err != nil {
				if strings.Contains(err.Error(), key(1)) {
					t.Fatalf("error reveals key material: %v", err)
				}
				return
			}
			if r.Active() != c.active {
				t.Fatalf("active %q, want %q", r.Active(), c.active)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	old := mustParse(t, "2024:"+key(1))
	sealedOld, err := old.Seal([]byte("old secret"))
	if err != nil {
		t.Fatal(err)
	}
	rotated := mustParse(t, "2024:"+key(1)+"\n*2025:"+key(2))
	got, err := rotated.Open(sealedOld)
	if err != nil || string(got) != "old secret" {
		t.Fatalf("rotated ring opens old value: %q, %v", got, err)
	}
	if stale, _ := rotated.Stale(sealedOld); !stale {
		t.Fatal("value under the old key is not reported stale")
	}
	sealedNew, _ := rotated.Seal([]byte("new secret"))
	if !strings.HasPrefix(sealedNew, "v1:2025:") {
		t.Fatalf("new value not sealed under the active key: %q", sealedNew)
	}
	if stale, _ := rotated.Stale(sealedNew); stale {
		t.Fatal("value under the active key reported stale")
	}
	retired := mustParse(t, "2025:"+key(2))
	if _, err := retired.Open(sealedOld); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("opening under a removed key: %v, want ErrUnknownKey", err)
	}
}

func TestOpenRefusesTampering(t *testing.T) {
	t.Parallel()
	r := mustParse(t, "a:"+key(1)+"\nb:"+key(2))
	s, _ := r.Seal([]byte("secret"))
	body := strings.TrimPrefix(s, "v1:a:")
	raw, _ := base64.RawURLEncoding.DecodeString(body)
	flip := func(i int) string {
		c := bytes.Clone(raw)
		c[i] ^= 1
		return "v1:a:" + base64.RawURLEncoding.EncodeToString(c)
	}
	cases := []struct {
		name  string
		value string
		want  error
	}{
		{"nonce bit flipped", flip(0), ErrTampered},
		{"ciphertext bit flipped", flip(12), ErrTampered},
		{"tag bit flipped", flip(len(raw) - 1), ErrTampered},
		{"moved to another key id", "v1:b:" + body, ErrTampered},
		{"truncated", "v1:a:" + body[:10], ErrMalformed},
		{"unknown key id", "v1:zz:" + body, ErrUnknownKey},
		{"other version", "v2:a:" + body, ErrMalformed},
		{"plaintext stored before encryption", "whsec_plain", ErrMalformed},
		{"not base64", "v1:a:***", ErrMalformed},
		{"empty", "", ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if _, err := r.Open(c.value); !errors.Is(err, c.want) {
				t.Fatalf("Open: %v, want %v", err, c.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte("f:"+key(3)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := Load("", path); err != nil || r.Active() != "f" {
		t.Fatalf("Load from file: %v", err)
	}
	if r, err := Load("e:"+key(4), ""); err != nil || r.Active() != "e" {
		t.Fatalf("Load from value: %v", err)
	}
	if _, err := Load("e:"+key(4), path); err == nil {
		t.Fatal("Load with both value and file accepted")
	}
	if _, err := Load("", ""); err == nil {
		t.Fatal("Load with neither accepted")
	}
	if _, err := Load("", filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("Load of a missing file accepted")
	}
}
