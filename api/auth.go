package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"orderflow"
)

// keyCacheTTL is how long a known key is trusted without asking the database again: the
// upper bound on how long a revoked key keeps working in a running API.
const keyCacheTTL = 5 * time.Second

type cachedClient struct {
	client  orderflow.Client
	expires time.Time
}

// clientCache keeps recently seen API keys, by digest, so that authentication costs no query
// on the hot path. Entries live ttl, so a revoked key stops working within ttl.
type clientCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[[32]byte]cachedClient
}

func newClientCache(ttl time.Duration) *clientCache {
	return &clientCache{ttl: ttl, m: map[[32]byte]cachedClient{}}
}

// Limits on what unknown keys may cost. A key the database does not know is remembered for
// unknownKeyTTL, so retrying it costs a map lookup; a new unknown key costs one query, and an
// address gets a few of those per second (WithKeyLookupLimit) before it is answered 429
// without a query; and at most maxKeyLookups queries run at once, so even many addresses
// spraying keys hold at most that many pool connections.
const (
	unknownKeyTTL  = 5 * time.Second
	maxUnknownKeys = 100_000
	maxKeyLookups  = 4
	// lookupBlock is how long an address that went over its budget of unknown keys is
	// answered 429 without a query.
	lookupBlock = 2 * time.Second
)

// errLookupLimited: the address has asked about too many unknown keys lately.
type errLookupLimited struct{ retryAfter time.Duration }

func (e errLookupLimited) Error() string { return "too many unknown API keys from this address" }

func (s *Server) authenticate(ctx context.Context, key, addr string) (orderflow.Client, bool, error) {
	digest := sha256.Sum256([]byte(key))
	s.clients.mu.Lock()
	c, ok := s.clients.m[digest]
	s.clients.mu.Unlock()
	if ok && time.Now().Before(c.expires) {
		return c.client, true, nil
	}
	if s.unknown.Contains(key) {
		return orderflow.Client{}, false, nil
	}
	// Requests that arrive together with one uncached key share one lookup: a client that
	// opens with 50 parallel requests costs one query and one token of its address's bucket.
	v, err, _ := s.flights.Do(string(digest[:]), func() (any, error) {
		return s.lookupKey(ctx, key, digest, addr)
	})
	if err != nil {
		return orderflow.Client{}, false, err
	}
	r := v.(keyLookup)
	return r.client, r.found, nil
}

type keyLookup struct {
	client orderflow.Client
	found  bool
}

// lookupKey asks the database about a key not in either cache, within the address's budget
// of lookups and the bound on lookups at once, and caches the answer.
func (s *Server) lookupKey(ctx context.Context, key string, digest [32]byte, addr string) (keyLookup, error) {
	// Only unknown keys count against the address (below): a known key whose cache entry
	// expired, or a lookup that failed because the database was away, is not a guess, and a
	// busy client must not be locked out by a database restart.
	if s.blocked.Contains(addr) {
		return keyLookup{}, errLookupLimited{retryAfter: lookupBlock}
	}
	// Other requests may be waiting on this lookup: the first one going away must not fail
	// theirs.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	select {
	case s.lookupSlots <- struct{}{}:
	case <-ctx.Done():
		return keyLookup{}, ctx.Err()
	}
	client, found, err := s.store.ClientByKeyDigest(ctx, digest[:])
	<-s.lookupSlots
	if err != nil {
		return keyLookup{}, err
	}
	if !found {
		s.unknown.Add(key)
		if s.lookups != nil {
			if ok, _ := s.lookups.Allow(addr); !ok {
				s.blocked.Add(addr)
			}
		}
		return keyLookup{}, nil
	}
	s.clients.mu.Lock()
	if len(s.clients.m) > 10_000 {
		s.clients.m = map[[32]byte]cachedClient{}
	}
	s.clients.m[digest] = cachedClient{client: client, expires: time.Now().Add(s.clients.ttl)}
	s.clients.mu.Unlock()
	return keyLookup{client: client, found: true}, nil
}

type clientKey struct{}

func clientFrom(ctx context.Context) orderflow.Client {
	c, _ := ctx.Value(clientKey{}).(orderflow.Client)
	return c
}

// scopeOf is whose orders a key may touch: a client its own, the fulfiller everyone's. Admin
// keys never reach the order routes (allow refuses them), and get the zero scope, which
// matches nothing, should a route ever let one through.
func scopeOf(c orderflow.Client) orderflow.Scope {
	switch c.Role {
	case orderflow.RoleClient:
		return orderflow.OwnedBy(c.ID)
	case orderflow.RoleFulfiller:
		return orderflow.AnyClient
	default:
		return orderflow.Scope{}
	}
}

// requireClient authenticates the bearer key and puts the client in the context.
func (s *Server) requireClient(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		key, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || strings.TrimSpace(key) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="orderflow"`)
			writeProblem(w, s.log, newProblem(codeUnauthorized, "send Authorization: Bearer <api key>", r.URL.Path))
			return
		}
		c, found, err := s.authenticate(r.Context(), strings.TrimSpace(key), sourceAddr(r))
		var limited errLookupLimited
		if errors.As(err, &limited) {
			s.tooMany(w, r, "auth_failures", limited.retryAfter, "this address sent too many unknown API keys; retry later")
			return
		}
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		if !found {
			w.Header().Set("WWW-Authenticate", `Bearer realm="orderflow", error="invalid_token"`)
			writeProblem(w, s.log, newProblem(codeUnauthorized, "the API key is not known", r.URL.Path))
			return
		}
		if s.limits != nil {
			if ok, wait := s.limits.Allow(c.ID); !ok {
				s.tooMany(w, r, "client", wait, "this client is over its request rate; retry after the Retry-After seconds")
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientKey{}, c)))
	})
}

// tooMany answers 429 rate-limited with Retry-After in whole seconds, rounded up so a client
// that waits that long finds a token.
func (s *Server) tooMany(w http.ResponseWriter, r *http.Request, reason string, wait time.Duration, detail string) {
	s.metrics.rateLimited.WithLabelValues(reason).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	writeProblem(w, s.log, newProblem(codeRateLimited, detail, r.URL.Path))
}

// sourceAddr is the address a request came from, without its port: the limit on unknown keys
// is per address. It is the TCP peer; behind a proxy that is the proxy (see docs/API.md).
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// allow lets through only keys with one of roles; any other key gets 403 forbidden.
func (s *Server) allow(roles ...orderflow.Role) func(http.Handler) http.Handler {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	detail := "this route needs a key with role " + strings.Join(names, " or ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			role := clientFrom(r.Context()).Role
			for _, want := range roles {
				if role == want {
					next.ServeHTTP(w, r)
					return
				}
			}
			writeProblem(w, s.log, newProblem(codeForbidden, detail, r.URL.Path))
		})
	}
}
