package deliver

import (
	"context"
	"sync"
	"time"

	"orderflow"
)

// The slot queue: a claimed delivery runs at once if its endpoint and the pool have a free
// slot, and otherwise waits here, oldest first, for the next slot of its endpoint.

// held is a claimed delivery waiting for a slot. It must start by startBy, so that its attempt
// still ends well inside the lease.
type held struct {
	d       orderflow.Delivery
	startBy time.Time
}

// maxHold is how long a claimed delivery may wait for a slot: half the lease's margin beyond
// the attempt timeout, so the write-back keeps at least the other half.
func (s *sender) maxHold() time.Duration { return (s.lease - s.policy.Timeout) / 2 }

// claimState is what the next claim needs: per endpoint, what this process holds (running
// and queued), whether a busy endpoint's queue has run low, and whether any endpoint holds
// less than perEndpoint + prefetch/2 (short: worth a claim while the database has more).
func (s *sender) claimState() (holding map[string]int, running, nQueued int, low, short bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	holding = make(map[string]int, len(s.inFlight)+len(s.queued))
	for k, v := range s.inFlight {
		holding[k] = v
		if v >= s.perEndpoint && len(s.queued[k]) <= s.prefetch/2 {
			low = true
		}
	}
	for k, q := range s.queued {
		holding[k] += len(q)
	}
	for _, n := range holding {
		if n < s.perEndpoint+s.prefetch/2 {
			short = true
		}
	}
	return holding, s.running, s.nQueued, low, short
}

// startOrQueue starts a claimed delivery if its endpoint and the pool have a free slot, and
// queues it for the next free slot of its endpoint otherwise.
func (s *sender) startOrQueue(ctx, sendCtx context.Context, wg *sync.WaitGroup, h held, freed chan<- struct{}, reports chan<- orderflow.DeliveryReport) {
	s.mu.Lock()
	ep := h.d.EndpointID
	if s.inFlight[ep] >= s.perEndpoint || s.running >= s.workers {
		s.queued[ep] = append(s.queued[ep], h)
		s.nQueued++
		s.mu.Unlock()
		return
	}
	s.inFlight[ep]++
	s.running++
	s.mu.Unlock()
	s.start(ctx, sendCtx, wg, h.d, freed, reports)
}

// startQueued starts queued deliveries whose endpoint has a free slot while the pool has one
// too (a slot freed by another endpoint), and gives back those that waited too long.
func (s *sender) startQueued(ctx, sendCtx context.Context, wg *sync.WaitGroup, freed chan<- struct{}, reports chan<- orderflow.DeliveryReport) {
	var starts []orderflow.Delivery
	var stale []held
	now := s.now()
	s.mu.Lock()
	for ep, q := range s.queued {
		for len(q) > 0 && (q[0].startBy.Before(now) || (s.inFlight[ep] < s.perEndpoint && s.running < s.workers)) {
			if q[0].startBy.Before(now) {
				stale = append(stale, q[0])
			} else {
				s.inFlight[ep]++
				s.running++
				starts = append(starts, q[0].d)
			}
			q = q[1:]
			s.nQueued--
		}
		if len(q) == 0 {
			delete(s.queued, ep)
		} else {
			s.queued[ep] = q
		}
	}
	s.mu.Unlock()
	for _, d := range starts {
		s.start(ctx, sendCtx, wg, d, freed, reports)
	}
	s.release(context.WithoutCancel(ctx), stale)
}

// next takes (if take) the next queued delivery of an endpoint whose attempt just finished;
// the slot passes to it. Otherwise the slot is given back. Queued deliveries past their
// startBy are returned as stale, to be released.
func (s *sender) next(ep string, take bool) (d orderflow.Delivery, ok bool, stale []held) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queued[ep]
	for take && len(q) > 0 && !ok {
		if q[0].startBy.Before(now) {
			stale = append(stale, q[0])
		} else {
			d, ok = q[0].d, true
		}
		q = q[1:]
		s.nQueued--
	}
	if len(q) == 0 {
		delete(s.queued, ep)
	} else {
		s.queued[ep] = q
	}
	if !ok {
		if s.inFlight[ep]--; s.inFlight[ep] <= 0 {
			delete(s.inFlight, ep)
		}
		s.running--
	}
	return d, ok, stale
}

// releaseQueued gives back every queued delivery at shutdown, so the next deliverer takes
// them at once instead of after the lease.
func (s *sender) releaseQueued(ctx context.Context) {
	var all []held
	s.mu.Lock()
	for _, q := range s.queued {
		all = append(all, q...)
	}
	clear(s.queued)
	s.nQueued = 0
	s.mu.Unlock()
	s.release(ctx, all)
}

func (s *sender) release(ctx context.Context, hs []held) {
	for _, h := range hs {
		if err := s.store.ReleaseClaim(ctx, h.d); err != nil {
			s.log.Warn("releasing delivery claim", "delivery_id", h.d.ID, "err", err)
		}
	}
}
