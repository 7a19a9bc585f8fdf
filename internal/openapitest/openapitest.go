// Package openapitest checks real HTTP exchanges against an OpenAPI document, so tests prove
// the document describes what the server does.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Document is a loaded, valid OpenAPI document and a router over its paths.
type Document struct {
	Doc    *openapi3.T
	router routers.Router
}

// Load parses spec (OpenAPI 3.0 or 3.1, JSON or YAML) and validates it.
func Load(ctx context.Context, spec []byte) (*Document, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("loading openapi document: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("validating openapi document: %w", err)
	}
	// Servers would tie routing to a host; the exchanges come from test servers on any port.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("routing openapi document: %w", err)
	}
	return &Document{Doc: doc, router: router}, nil
}

// Check validates one exchange: the response must be one the document describes for the
// request's operation (status, headers, content type, body). The request is checked too when
// the server accepted it (status below 400): every request the API accepts must be one the
// document allows, while a refused request is by design outside it.
//
// req's body has been consumed by sending it, so reqBody carries its bytes.
func (d *Document) Check(ctx context.Context, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	r := req.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := d.router.FindRoute(r)
	switch {
	case (errors.Is(err, routers.ErrPathNotFound) && resp.StatusCode == http.StatusNotFound) ||
		(errors.Is(err, routers.ErrMethodNotAllowed) && resp.StatusCode == http.StatusMethodNotAllowed):
		// No operation to check against: the answer must still be a problem.
		return d.checkProblem(resp, respBody)
	case err != nil:
		return fmt.Errorf("%s %s: answered %d, but the document has no operation for it: %w", req.Method, req.URL.Path, resp.StatusCode, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{
			MultiError: true,
			// Authentication is the server's business; the document only says which scheme.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
		},
	}
	if resp.StatusCode < 400 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			return fmt.Errorf("%s %s: the server accepted a request the document does not allow: %w", req.Method, req.URL.Path, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(respBody)),
		Options:                &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("%s %s: answer %d is not what the document describes: %w", req.Method, req.URL.Path, resp.StatusCode, err)
	}
	return nil
}

// checkProblem validates an answer outside every operation against the document's Problem
// schema, served as application/problem+json.
func (d *Document) checkProblem(resp *http.Response, body []byte) error {
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		return fmt.Errorf("answer %d has Content-Type %q, want application/problem+json", resp.StatusCode, ct)
	}
	ref := d.Doc.Components.Schemas["Problem"]
	if ref == nil || ref.Value == nil {
		return errors.New("the document has no Problem schema")
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("answer %d is not JSON: %w", resp.StatusCode, err)
	}
	if err := ref.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		return fmt.Errorf("answer %d is not a Problem: %w", resp.StatusCode, err)
	}
	return nil
}
