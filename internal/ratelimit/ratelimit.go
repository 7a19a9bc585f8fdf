// Package ratelimit limits requests per client with token buckets held in bounded memory.
package ratelimit

import (
	"container/list"
	"errors"
	"math"
	"sync"
	"time"
)

// Config sets a Limiter's rate and bounds.
type Config struct {
	// Rate is the sustained number of requests per second a key may make.
	Rate float64
	// Burst is how many requests a key may make at once after being idle.
	Burst int
	// MaxKeys caps the number of buckets held. When full, the least recently used bucket is
	// dropped: that key then starts with a full bucket again, which costs at most one burst,
	// whereas refusing new keys would let anyone spraying keys lock every new client out.
	MaxKeys int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Limiter is a set of token buckets, one per key. It is safe for concurrent use.
type Limiter struct {
	rate    float64
	burst   float64
	maxKeys int
	now     func() time.Time
	// fullAfter is how long a bucket takes to refill from empty: an untouched bucket older
	// than that is full, the same as no bucket, so dropping it changes nothing.
	fullAfter time.Duration

	mu      sync.Mutex
	buckets map[string]*list.Element // of *bucket
	lru     list.List                // front is the most recently used
}

type bucket struct {
	key    string
	tokens float64
	last   time.Time
}

// New returns a limiter for c.
func New(c Config) (*Limiter, error) {
	switch {
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return nil, errors.New("rate limit: rate must be a positive number of requests per second")
	case c.Burst < 1:
		return nil, errors.New("rate limit: burst must be at least 1")
	case c.MaxKeys < 1:
		return nil, errors.New("rate limit: the key cap must be at least 1")
	}
	now := c.Now
	if now == nil {
		now = time.Now
	}
	return &Limiter{
		rate: c.Rate, burst: float64(c.Burst), maxKeys: c.MaxKeys, now: now,
		fullAfter: time.Duration(float64(c.Burst) / c.Rate * float64(time.Second)),
		buckets:   map[string]*list.Element{},
	}, nil
}

// Allow takes a token from key's bucket. When none is left it returns false and how long
// until one is, for a Retry-After header.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evictIdle(now)
	var b *bucket
	if e, found := l.buckets[key]; found {
		b = e.Value.(*bucket)
		l.lru.MoveToFront(e)
		if elapsed := now.Sub(b.last); elapsed > 0 {
			b.tokens = math.Min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
		}
		if now.After(b.last) {
			b.last = now
		}
	} else {
		if len(l.buckets) >= l.maxKeys {
			l.remove(l.lru.Back())
		}
		b = &bucket{key: key, tokens: l.burst, last: now}
		l.buckets[key] = l.lru.PushFront(b)
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// evictIdle drops buckets from the least recently used end that have refilled completely.
// Each call removes what it finds, so the work is paid for by the inserts that made it.
func (l *Limiter) evictIdle(now time.Time) {
	for e := l.lru.Back(); e != nil; e = l.lru.Back() {
		if now.Sub(e.Value.(*bucket).last) < l.fullAfter {
			return
		}
		l.remove(e)
	}
}

func (l *Limiter) remove(e *list.Element) {
	delete(l.buckets, e.Value.(*bucket).key)
	l.lru.Remove(e)
}

// Len returns the number of buckets held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
