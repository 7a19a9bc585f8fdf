package orderflow

import (
	"strings"
	"unicode/utf8"
)

// StorableText makes s safe to store in a PostgreSQL text column of at most maxBytes bytes:
// invalid UTF-8 becomes U+FFFD, NUL (which PostgreSQL refuses in text) becomes U+FFFD, and
// the result is cut at a rune boundary. Cutting bytes instead could split a multi-byte
// character, which PostgreSQL then refuses with SQLSTATE 22021, failing the whole write.
// Use it for diagnostic text (errors, reasons) that is stored, never for data that must
// round-trip exactly.
func StorableText(s string, maxBytes int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	if maxBytes < 0 || len(s) <= maxBytes {
		return s
	}
	cut := maxBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
