package api

import (
	"encoding/json"
	"net/http"
	"testing"

	"orderflow"
)

func TestIntField(t *testing.T) {
	t.Parallel()
	cases := []struct {
		json    string
		problem bool
		n       int64
	}{
		{`{"v": 5}`, false, 5},
		{`{"v": 0}`, false, 0},
		{`{"v": 10}`, false, 10},
		{`{"v": 11}`, true, 0},
		{`{"v": -1}`, true, 0},
		{`{"v": 1.5}`, true, 0},
		{`{"v": 1e2}`, true, 0},
		{`{"v": "5"}`, true, 0},
		{`{"v": null}`, true, 0},
		{`{"v": 9223372036854775808}`, true, 0},
		{`{}`, true, 0},
	}
	for _, c := range cases {
		t.Run(c.json, func(t *testing.T) {
			t.Parallel()
			var v struct {
				V intField `json:"v"`
			}
			if err := json.Unmarshal([]byte(c.json), &v); err != nil {
				t.Fatalf("decoding: %v", err)
			}
			p := v.V.problem(0, 10)
			if (p != "") != c.problem || (!c.problem && v.V.n != c.n) {
				t.Fatalf("problem %q n %d, want problem=%v n=%d", p, v.V.n, c.problem, c.n)
			}
		})
	}
}

func TestEveryCodeHasAStatus(t *testing.T) {
	t.Parallel()
	codes := []string{orderflow.ECodeValidation, orderflow.ECodeNotFound, orderflow.ECodeInsufficientStock,
		orderflow.ECodeInvalidTransition, orderflow.ECodeKeyReused, orderflow.ECodeStockBelowReserved,
		codeUnauthorized, codeForbidden, codeKeyMissing, codeKeyInvalid, codeMalformed, codeTooLarge,
		codeUnsupportedMedia, codeRouteNotFound, codeMethodNotAllowed, codeNotReady}
	for _, c := range codes {
		if s, _ := problemStatus(c); s == http.StatusInternalServerError {
			t.Errorf("code %q maps to 500", c)
		}
	}
}

func TestContentTypes(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]bool{
		"application/json": true, "application/json; charset=utf-8": true, "Application/JSON": true,
		"application/merge-patch+json": true, "text/plain": false, "": false, "application/jsonx": false,
	} {
		if got := isJSONContentType(ct); got != want {
			t.Errorf("isJSONContentType(%q) = %v, want %v", ct, got, want)
		}
	}
}
