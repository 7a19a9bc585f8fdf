package negcache

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestCache(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := New(10*time.Second, 3, clk.now)
	c.Add("unknown")
	if !c.Contains("unknown") || c.Contains("other") {
		t.Fatal("membership wrong right after Add")
	}
	clk.advance(9 * time.Second)
	if !c.Contains("unknown") {
		t.Fatal("forgotten before the TTL")
	}
	clk.advance(time.Second)
	if c.Contains("unknown") || c.Len() != 0 {
		t.Fatal("remembered after the TTL")
	}
	c.Add("created-later")
	c.Remove("created-later")
	if c.Contains("created-later") {
		t.Fatal("Remove did not forget the key")
	}
}

func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := New(time.Minute, 100, clk.now)
	for i := range 10_000 {
		c.Add(fmt.Sprintf("spray-%d", i))
	}
	if c.Len() != 100 {
		t.Fatalf("%d keys after spraying, want the cap of 100", c.Len())
	}
	if !c.Contains("spray-9999") || c.Contains("spray-0") {
		t.Fatal("the oldest keys should go first")
	}
}

func TestReAddRefreshesTTL(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := New(10*time.Second, 10, clk.now)
	c.Add("k")
	clk.advance(8 * time.Second)
	c.Add("k")
	clk.advance(8 * time.Second)
	if !c.Contains("k") || c.Len() != 1 {
		t.Fatal("re-adding did not refresh the entry")
	}
}
