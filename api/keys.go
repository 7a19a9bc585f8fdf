package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// KeyPrefix starts every API key, so a key that leaks into a log, a ticket or a repository is
// recognisable (and secret scanners can be taught to find it).
const KeyPrefix = "of_"

// NewKey returns a new API key (256 random bits), its id and the digest the database stores.
// The key itself is shown once, by whoever asked for it, and never stored.
func NewKey() (key, id string, digest []byte, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", nil, fmt.Errorf("making api key: %w", err)
	}
	idb := make([]byte, 8)
	if _, err := rand.Read(idb); err != nil {
		return "", "", nil, fmt.Errorf("making api key id: %w", err)
	}
	key = KeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	return key, "key_" + hex.EncodeToString(idb), KeyDigest(key), nil
}

// KeyDigest is the SHA-256 digest under which a key is stored and looked up. A fast hash is
// enough: the key has 256 random bits, so there is nothing to guess from the digest.
func KeyDigest(key string) []byte {
	d := sha256.Sum256([]byte(key))
	return d[:]
}
