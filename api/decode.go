package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

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
	if badText(body) {
		// encoding/json silently turns invalid UTF-8, and \u escapes of lone UTF-16 surrogates,
		// into U+FFFD, which would store text the client never sent; refuse it and name the
		// field instead.
		detail := "must be valid UTF-8"
		if utf8.Valid(body) {
			detail = `must not hold a lone surrogate escape (\ud800 to \udfff outside a pair)`
		}
		e := orderflow.Errorf(orderflow.ECodeValidation, "the body is not valid UTF-8")
		e.Fields = []orderflow.FieldProblem{{Pointer: invalidUTF8Pointer(body), Detail: detail}}
		return e
	}
	return nil
}

// invalidUTF8Pointer returns the JSON pointer (RFC 6901) of the first value in body, a
// syntactically valid JSON document, whose raw bytes are not valid UTF-8. An invalid member
// name is reported at the object holding it.
func invalidUTF8Pointer(body []byte) string {
	type frame struct {
		object    bool
		expectKey bool
		key       string
		index     int
	}
	var stack []frame
	pointer := func(frames []frame) string {
		var b strings.Builder
		for _, f := range frames {
			b.WriteByte('/')
			if f.object {
				b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(f.key))
			} else {
				b.WriteString(strconv.Itoa(f.index))
			}
		}
		return b.String()
	}
	// valueDone moves the enclosing container past the value just read.
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		if top := &stack[len(stack)-1]; top.object {
			top.expectKey = true
		} else {
			top.index++
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var prev int64
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		// The bytes since the previous token hold only this token plus ASCII separators.
		raw := body[prev:dec.InputOffset()]
		prev = dec.InputOffset()
		isKey := len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].expectKey
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				stack = append(stack, frame{object: t == '{', expectKey: t == '{'})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
			continue
		case string:
			if isKey {
				if badText(raw) {
					return pointer(stack[:len(stack)-1])
				}
				stack[len(stack)-1].key, stack[len(stack)-1].expectKey = t, false
				continue
			}
			if badText(raw) {
				return pointer(stack)
			}
		}
		valueDone()
	}
}

// badText reports whether raw JSON text holds invalid UTF-8 or a \u escape of a UTF-16
// surrogate that is not half of a pair: both decode to U+FFFD instead of what was sent.
func badText(raw []byte) bool {
	if !utf8.Valid(raw) {
		return true
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++ // the escaped character; a backslash escaping a backslash is skipped whole
		if i >= len(raw) || raw[i] != 'u' {
			continue
		}
		r, ok := hex4(raw, i+1)
		if !ok {
			continue
		}
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true // a low surrogate not after a high one
		case r >= 0xD800 && r <= 0xDBFF:
			low, ok := hex4(raw, i+3)
			if i+2 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' || !ok || low < 0xDC00 || low > 0xDFFF {
				return true
			}
			i += 6
		}
	}
	return false
}

// hex4 reads four hex digits at raw[i:].
func hex4(raw []byte, i int) (rune, bool) {
	if i+4 > len(raw) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(raw[i:i+4]), 16, 16)
	return rune(n), err == nil
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

// MarshalJSON writes the number (null when it was not a valid integer), so a request's
// canonical form, its idempotency fingerprint, tells one value from another.
func (f intField) MarshalJSON() ([]byte, error) {
	if !f.valid {
		return []byte("null"), nil
	}
	return strconv.AppendInt(nil, f.n, 10), nil
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
