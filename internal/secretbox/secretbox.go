// Package secretbox encrypts webhook signing secrets at rest with AES-256-GCM, so a copy of
// the database (a backup, a replica, a leaked dump) does not let anyone forge webhook
// signatures.
//
// # Key ring format
//
// A key ring is text holding one key per entry, entries separated by newlines, commas or
// spaces:
//
//	# comment lines and blank lines are ignored
//	2024a:3q2+7w...base64 of 32 random bytes...=
//	*2025b:Zm9v...=
//
// Each entry is id:base64key. The id is 1 to 32 characters of [A-Za-z0-9_-]; the key is
// standard base64 (padding optional) of exactly 32 bytes, e.g. `openssl rand -base64 32`.
// The active key, the one Seal uses, is the entry marked with a leading '*', or the first
// entry when none is marked. Every key in the ring can Open.
//
// # Rotation
//
// Add the new key marked active and keep the old ones: values sealed under old ids still
// open, new values are sealed under the new id. Once every stored value has been re-sealed
// (see Ring.Stale), the old key can be removed.
//
// # Sealed format
//
//	v1:<key id>:<base64url(nonce | ciphertext | tag)>
//
// The version and key id are authenticated as associated data, so a value cannot be moved
// to another key id or version without Open failing.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

const version = "v1"

var (
	// ErrUnknownKey means the value was sealed under a key id the ring does not hold: a key
	// was removed from the ring too early, or the ring is the wrong one.
	ErrUnknownKey = errors.New("secretbox: sealed under a key id the ring does not hold")
	// ErrMalformed means the value is not a sealed value at all.
	ErrMalformed = errors.New("secretbox: not a sealed value")
	// ErrTampered means authentication failed: the value was altered, or the key under its
	// id is not the key that sealed it.
	ErrTampered = errors.New("secretbox: sealed value failed authentication")
)

// Ring holds the keys by id and the id of the active one.
type Ring struct {
	keys   map[string]cipher.AEAD
	active string
}

// Load reads a key ring from value or, when value is empty, from the file at path (a
// mounted secret). Exactly one of them must be set.
func Load(value, path string) (*Ring, error) {
	switch {
	case value != "" && path != "":
		return nil, errors.New("loading key ring: set either the key value or the key file, not both")
	case value != "":
		return Parse(value)
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("loading key ring: %w", err)
		}
		return Parse(string(b))
	default:
		return nil, errors.New("loading key ring: no key value or key file given")
	}
}

// Parse reads a key ring in the format described in the package documentation. Its errors
// name the entry by position, never by content, since the content is key material.
func Parse(text string) (*Ring, error) {
	r := &Ring{keys: map[string]cipher.AEAD{}}
	var first, marked string
	n := 0
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, entry := range strings.FieldsFunc(line, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' || c == '\r' }) {
			n++
			id, key, isActive, err := parseEntry(entry)
			if err != nil {
				return nil, fmt.Errorf("parsing key ring entry %d: %w", n, err)
			}
			if _, dup := r.keys[id]; dup {
				return nil, fmt.Errorf("parsing key ring entry %d: key id %q appears twice", n, id)
			}
			aead, err := newAEAD(key)
			if err != nil {
				return nil, fmt.Errorf("parsing key ring entry %d: %w", n, err)
			}
			r.keys[id] = aead
			if first == "" {
				first = id
			}
			if isActive {
				if marked != "" {
					return nil, fmt.Errorf("parsing key ring: both %q and %q are marked active", marked, id)
				}
				marked = id
			}
		}
	}
	if first == "" {
		return nil, errors.New("parsing key ring: no keys")
	}
	r.active = first
	if marked != "" {
		r.active = marked
	}
	return r, nil
}

func parseEntry(entry string) (id string, key []byte, active bool, err error) {
	entry, active = strings.CutPrefix(entry, "*")
	id, b64, ok := strings.Cut(entry, ":")
	if !ok {
		return "", nil, false, errors.New("want id:base64key")
	}
	if !validID(id) {
		return "", nil, false, errors.New("key id must be 1 to 32 characters of A-Z a-z 0-9 _ -")
	}
	key, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(b64, "="))
	if err != nil {
		return "", nil, false, fmt.Errorf("key %q is not base64", id)
	}
	if len(key) != 32 {
		return "", nil, false, fmt.Errorf("key %q is %d bytes, want 32 (AES-256)", id, len(key))
	}
	return id, key, active, nil
}

func validID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("creating cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("creating GCM: %w", err)
	}
	return aead, nil
}

// Active returns the id of the key Seal uses.
func (r *Ring) Active() string { return r.active }

// Seal encrypts plaintext under the active key with a random nonce.
func (r *Ring) Seal(plaintext []byte) (string, error) {
	aead := r.keys[r.active]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("sealing secret: reading nonce: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, plaintext, header(r.active))
	return string(header(r.active)) + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open decrypts a value sealed under any key in the ring.
func (r *Ring) Open(s string) ([]byte, error) {
	id, body, err := split(s)
	if err != nil {
		return nil, err
	}
	aead, ok := r.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrMalformed
	}
	nonce, ct := raw[:aead.NonceSize()], raw[aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, ct, header(id))
	if err != nil {
		return nil, ErrTampered
	}
	return pt, nil
}

// Stale reports whether s was sealed under a key other than the active one, so a
// re-sealing job can find what still depends on an old key.
func (r *Ring) Stale(s string) (bool, error) {
	id, _, err := split(s)
	if err != nil {
		return false, err
	}
	return id != r.active, nil
}

func header(id string) []byte { return []byte(version + ":" + id + ":") }

func split(s string) (id, body string, err error) {
	v, rest, ok := strings.Cut(s, ":")
	if !ok || v != version {
		return "", "", ErrMalformed
	}
	id, body, ok = strings.Cut(rest, ":")
	if !ok || !validID(id) || body == "" {
		return "", "", ErrMalformed
	}
	return id, body, nil
}
