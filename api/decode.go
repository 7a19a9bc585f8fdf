package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"orderflow"
)

// MaxBodyBytes is the largest request body the API reads.
const MaxBodyBytes = 1 << 20

// decode reads a JSON body into v: it enforces the size limit and content type, and refuses
// unknown fields and trailing data. optional lets an empty body through untouched.
func decode(r *http.Request, v any, optional bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return orderflow.Errorf(codeTooLarge, "the body is larger than %d bytes", MaxBodyBytes)
		}
		return orderflow.Errorf(codeMalformed, "reading the body: %v", err)
	}
	if optional && len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		return orderflow.Errorf(codeUnsupportedMedia, "send the body as application/json, not %q", r.Header.Get("Content-Type"))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return orderflow.Errorf(codeMalformed, "the body is not the expected JSON: %s", jsonErrorText(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return orderflow.Errorf(codeMalformed, "the body has data after the JSON value")
	}
	return nil
}

func jsonErrorText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "the body is empty"
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be a JSON %s", te.Field, te.Type.Kind())
	default:
		return err.Error() // e.g. json: unknown field "x"
	}
}

// intField accepts only a JSON integer; anything else (a string, a fraction, null, a number
// beyond int64) is kept as invalid so validation can name the field with a 422 instead of
// failing the whole body as malformed.
type intField struct {
	n       int64
	present bool
	valid   bool
}

func (f *intField) UnmarshalJSON(b []byte) error {
	f.present = true
	if len(b) == 0 || !(b[0] == '-' || (b[0] >= '0' && b[0] <= '9')) {
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return nil
	}
	f.n, f.valid = n, true
	return nil
}

func (f intField) problem(min, max int64) string {
	if !f.present {
		return fmt.Sprintf("is required: an integer from %d to %d", min, max)
	}
	if !f.valid || f.n < min || f.n > max {
		return fmt.Sprintf("must be an integer from %d to %d", min, max)
	}
	return ""
}

// encode writes v as JSON with status.
func encode(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
