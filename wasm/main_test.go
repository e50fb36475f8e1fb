//go:build js && wasm

package main

import (
	"errors"
	"slices"
	"strings"
	"syscall/js"
	"testing"
	"time"

	"github.com/topgun-go/topgun/sync/client"
)

// TestPanicsReachJSAsErrors: a panic in an API function and one in a
// Promise's goroutine come back to JS as {error, code}, and the program
// keeps running.
func TestPanicsReachJSAsErrors(t *testing.T) {
	f := apiFunc("boom", func([]js.Value) any { panic("kaboom") })
	defer f.Release()
	res := f.Invoke()
	if res.Get("code").String() != "ERROR" || !strings.Contains(res.Get("error").String(), "Go panic in boom: kaboom") {
		t.Fatalf("result %v", res.Get("error"))
	}

	p := promise(func() (any, error) { panic("async kaboom") })
	got := make(chan string, 1)
	onErr := js.FuncOf(func(this js.Value, args []js.Value) any {
		got <- args[0].Get("error").String()
		return nil
	})
	defer onErr.Release()
	p.Call("catch", onErr)
	select {
	case msg := <-got:
		if !strings.Contains(msg, "Go panic: async kaboom") {
			t.Fatalf("rejection %q", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Promise was not rejected")
	}
}

func TestErrObjectCodes(t *testing.T) {
	for err, code := range map[error]string{
		client.ErrClosed:                         "CLOSED",
		client.ErrNotStarted:                     "NOT_STARTED",
		client.ErrOffline:                        "OFFLINE",
		client.ErrDisconnected:                   "DISCONNECTED",
		errors.New("something"):                  "ERROR",
		&client.LockError{Reason: "invalid_ttl"}: "INVALID_TTL",
	} {
		if got := errObject(err).Get("code").String(); got != code {
			t.Errorf("errObject(%v).code = %s, want %s", err, got, code)
		}
	}
}

// TestStringList: serverUrl is a string or an array of strings.
func TestStringList(t *testing.T) {
	tests := []struct {
		in   any
		want []string // nil: an error
	}{
		{"ws://a/ws", []string{"ws://a/ws"}},
		{[]any{"ws://a/ws", "ws://b/ws"}, []string{"ws://a/ws", "ws://b/ws"}},
		{[]any{}, []string{}},
		{[]any{"ws://a/ws", 1}, nil},
		{42, nil},
		{nil, nil},
		{js.Undefined(), nil},
		{map[string]any{"0": "ws://a/ws"}, nil},
	}
	for _, tt := range tests {
		got, err := stringList(js.ValueOf(tt.in))
		if tt.want == nil {
			if err == nil {
				t.Errorf("stringList(%v) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("stringList(%v) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
