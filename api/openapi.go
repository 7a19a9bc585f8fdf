package api

import (
	"bytes"
	_ "embed"
	"net/http"
)

// openAPI describes every route of routes.go; TestOpenAPIDescribesEveryRoute keeps the two
// in step, and the request tests check real answers against it.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document of the API.
func OpenAPI() []byte { return bytes.Clone(openAPI) }

// OpenAPIHandler serves the OpenAPI document.
func OpenAPIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
}
