// Package negcache remembers, briefly, API keys that were not found, so a client (or an
// attacker) retrying an unknown key costs a map lookup instead of a database query.
package negcache

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

// Cache is a bounded set of recently unknown keys, each forgotten after a TTL. It holds
// SHA-256 digests, not the keys: a mistyped key is often one character from a real one.
// It is safe for concurrent use.
type Cache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*list.Element // of *entry
	order   list.List                           // front is the newest; all share one TTL, so the back expires first
}

type entry struct {
	digest  [sha256.Size]byte
	expires time.Time
}

// New returns a cache whose entries live for ttl, holding at most maxKeys of them (the oldest
// is dropped first). now is the clock; nil means time.Now.
func New(ttl time.Duration, maxKeys int, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{ttl: ttl, max: max(maxKeys, 1), now: now, entries: map[[sha256.Size]byte]*list.Element{}}
}

// Add records that key is unknown.
func (c *Cache) Add(key string) {
	d := sha256.Sum256([]byte(key))
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if e, ok := c.entries[d]; ok {
		c.order.Remove(e)
	}
	for len(c.entries) >= c.max && c.order.Len() > 0 {
		c.remove(c.order.Back())
	}
	c.entries[d] = c.order.PushFront(&entry{digest: d, expires: now.Add(c.ttl)})
}

// Contains reports whether key was recorded unknown less than the TTL ago.
func (c *Cache) Contains(key string) bool {
	d := sha256.Sum256([]byte(key))
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	_, ok := c.entries[d]
	return ok
}

// Remove forgets key, so a key created in this process works at once instead of after
// the TTL.
func (c *Cache) Remove(key string) {
	d := sha256.Sum256([]byte(key))
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[d]; ok {
		c.remove(e)
	}
}

// Len returns the number of keys held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *Cache) expire(now time.Time) {
	for e := c.order.Back(); e != nil && !now.Before(e.Value.(*entry).expires); e = c.order.Back() {
		c.remove(e)
	}
}

func (c *Cache) remove(e *list.Element) {
	delete(c.entries, e.Value.(*entry).digest)
	c.order.Remove(e)
}
