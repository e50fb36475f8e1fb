//go:build !js

package client

import (
	"slices"
	"testing"
)

func TestServerURLs(t *testing.T) {
	t.Parallel()
	const a, b, c = "ws://a/ws", "ws://b/ws", "ws://c/ws"
	tests := []struct {
		name string
		url  string
		urls []string
		want []string // nil: an error
	}{
		{"URL alone", a, nil, []string{a}},
		{"URLs alone", "", []string{a, b}, []string{a, b}},
		{"URL first", c, []string{a, b}, []string{c, a, b}},
		{"duplicates dropped", b, []string{a, b, a, c}, []string{b, a, c}},
		{"none", "", nil, nil},
		{"empty list", "", []string{}, nil},
		{"empty entry", a, []string{b, ""}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := serverURLs(Options{URL: tt.url, URLs: tt.urls})
			if tt.want == nil {
				if err == nil {
					t.Fatalf("serverURLs = %q, want an error", got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("serverURLs = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
