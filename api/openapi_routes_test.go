package api

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"testing"

	"github.com/gorilla/mux"

	"orderflow/internal/openapitest"
)

// muxVarPattern is a route variable's regexp, which OpenAPI path templates do not have.
var muxVarPattern = regexp.MustCompile(`\{([^}:]+):[^}]+\}`)

// TestOpenAPIDescribesEveryRoute keeps openapi.json and routes.go in step: the same paths and
// methods, no route undocumented and no documented route missing.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	s := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var served []string
	err := s.handler.(*mux.Router).Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		methods, err := route.GetMethods()
		if err != nil {
			return nil // the /v1 prefix itself, which only groups routes
		}
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return err
		}
		for _, m := range methods {
			served = append(served, m+" "+muxVarPattern.ReplaceAllString(tpl, "{$1}"))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking routes: %v", err)
	}
	d, err := openapitest.Load(context.Background(), OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, item := range d.Doc.Paths.Map() {
		for m := range item.Operations() {
			documented = append(documented, m+" "+path)
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("%s is served but not in openapi.json", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("%s is in openapi.json but not served", r)
		}
	}
	if len(served) == 0 {
		t.Fatal("the router has no routes")
	}
}

// TestOpenAPIIsValid31 loads the document with kin-openapi, which validates OpenAPI 3.1 and
// its JSON Schema 2020-12 schemas since the versions this module requires.
func TestOpenAPIIsValid31(t *testing.T) {
	t.Parallel()
	d, err := openapitest.Load(context.Background(), OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if !d.Doc.IsOpenAPI31OrLater() || d.Doc.IsOpenAPI32OrLater() {
		t.Fatalf("openapi %q, want 3.1", d.Doc.OpenAPI)
	}
	for path, item := range d.Doc.Paths.Map() {
		for m, op := range item.Operations() {
			if op.Responses.Default() == nil {
				t.Errorf("%s %s: no default (problem) response", m, path)
			}
		}
	}
}
