//go:build !js

package client

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	c, err := New(Options{URL: "ws://127.0.0.1:1/ws"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tests := []struct {
		attempt int
		base    time.Duration
	}{
		{0, time.Second},
		{1, 2 * time.Second},
		{4, 16 * time.Second},
		{5, 30 * time.Second},
		{40, 30 * time.Second},
	}
	for _, tt := range tests {
		for range 200 {
			d := c.backoff(tt.attempt)
			if d < tt.base/2 || d >= tt.base*3/2 {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v)", tt.attempt, d, tt.base/2, tt.base*3/2)
			}
		}
	}
}

func TestFailoverDelay(t *testing.T) {
	t.Parallel()
	c, err := New(Options{URLs: []string{"ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 200 {
		if d := c.failoverDelay(); d < 0 || d >= time.Second/2 {
			t.Fatalf("failoverDelay() = %v, want in [0, 500ms)", d)
		}
	}
}
