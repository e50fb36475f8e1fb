package fence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client checks fencing tokens against one server (any node of a
// cluster). It is safe for concurrent use.
type Client struct {
	base  string
	token string
	// HTTPClient makes the requests (default: a client with a 10 s
	// timeout). Set it before the first Check.
	HTTPClient *http.Client
}

// New returns a client of the server at baseURL (http://host:port), which
// authenticates with adminToken (the server's --admin-token, or a JWT
// carrying "topgun_admin": true; "" for a --no-auth server reached over
// loopback).
func New(baseURL, adminToken string) *Client {
	return &Client{
		base:       strings.TrimSuffix(baseURL, "/"),
		token:      adminToken,
		HTTPClient: &http.Client{Timeout: 10 * time.Second},
	}
}

// ErrStale matches a *StaleError with errors.Is.
var ErrStale = errors.New("fence: stale fencing token")

// StaleError is Check's error when the token is not the current holder's.
type StaleError struct {
	// Name is the lock's name and Token the token checked.
	Name  string
	Token uint64
	// Current is the current holder's token, 0 when nobody holds the lock.
	Current uint64
}

func (e *StaleError) Error() string {
	if e.Current == 0 {
		return fmt.Sprintf("fence: token %d of lock %q is stale: nobody holds the lock", e.Token, e.Name)
	}
	return fmt.Sprintf("fence: token %d of lock %q is stale: the holder's token is %d", e.Token, e.Name, e.Current)
}

// Is makes errors.Is(err, ErrStale) true.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// Error is a refusal or failure reported by the server: a bad name (400),
// a missing (401) or refused (403) credential, a backend that could not
// answer (503).
type Error struct {
	Status  int    // HTTP status
	Message string // the server's "error"
}

func (e *Error) Error() string {
	return fmt.Sprintf("fence: server answered %d: %s", e.Status, e.Message)
}

// Check reports whether token is the fencing token of the current holder
// of the lock name: (true, nil) when it is, (false, *StaleError) when it
// is not, and (false, err) when the server could not say (unreachable, a
// refused credential: *Error).
func (c *Client) Check(ctx context.Context, name string, token uint64) (bool, error) {
	body, _ := json.Marshal(map[string]uint64{"token": token})
	u := c.base + "/v1/locks/" + url.PathEscape(name) + "/fence"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("fence: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		return false, fmt.Errorf("fence: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return false, fmt.Errorf("fence: reading the answer: %w", err)
	}
	var out struct {
		Current      bool   `json:"current"`
		FencingToken uint64 `json:"fencingToken"`
		Error        string `json:"error"`
	}
	jerr := json.Unmarshal(b, &out)
	switch {
	case resp.StatusCode == http.StatusOK && jerr == nil && out.Current:
		return true, nil
	case resp.StatusCode == http.StatusConflict && jerr == nil && out.Error == "":
		return false, &StaleError{Name: name, Token: token, Current: out.FencingToken}
	case jerr == nil && out.Error != "":
		return false, &Error{Status: resp.StatusCode, Message: out.Error}
	}
	return false, &Error{Status: resp.StatusCode, Message: "unexpected answer: " + strings.TrimSpace(string(b[:min(len(b), 200)]))}
}
