package api

import (
	"context"
	"crypto/sha256"
	"net/http"
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

func (s *Server) authenticate(ctx context.Context, key string) (orderflow.Client, bool, error) {
	digest := sha256.Sum256([]byte(key))
	now := time.Now()
	s.clients.mu.Lock()
	c, ok := s.clients.m[digest]
	s.clients.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.client, true, nil
	}
	client, found, err := s.store.ClientByKeyDigest(ctx, digest[:])
	if err != nil || !found {
		return client, false, err
	}
	s.clients.mu.Lock()
	if len(s.clients.m) > 10_000 {
		s.clients.m = map[[32]byte]cachedClient{}
	}
	s.clients.m[digest] = cachedClient{client: client, expires: now.Add(s.clients.ttl)}
	s.clients.mu.Unlock()
	return client, true, nil
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
		c, found, err := s.authenticate(r.Context(), strings.TrimSpace(key))
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		if !found {
			w.Header().Set("WWW-Authenticate", `Bearer realm="orderflow", error="invalid_token"`)
			writeProblem(w, s.log, newProblem(codeUnauthorized, "the API key is not known", r.URL.Path))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientKey{}, c)))
	})
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
