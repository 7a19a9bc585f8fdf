package orderflow

import (
	"testing"
	"unicode/utf8"
)

func TestStorableText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"short ascii kept", "abc", 10, "abc"},
		{"ascii cut", "abcdef", 3, "abc"},
		{"cut inside a 2-byte rune backs off", "aé", 2, "a"},
		{"cut inside a 4-byte rune backs off", "ab😀", 4, "ab"},
		{"exact rune boundary", "aé", 3, "aé"},
		{"invalid utf-8 replaced", "a\xffb", 10, "a\uFFFDb"},
		{"nul replaced", "a\x00b", 10, "a\uFFFDb"},
		{"zero max", "abc", 0, ""},
		{"negative max keeps all", "abc", -1, "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := StorableText(tt.in, tt.max)
			if got != tt.want {
				t.Errorf("StorableText(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("result %q is not valid UTF-8", got)
			}
		})
	}
}
