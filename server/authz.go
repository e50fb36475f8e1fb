package server

import (
	"errors"
	"fmt"
)

// Per-name authorization (docs/auth.md, "Per-name permissions"). A token
// may carry a "topgun" object claim:
//
//	{"topgun": {"read": ["likes:*"], "write": ["likes:*"], "lock": ["job-queue:*"]}}
//
// Without the claim every name is allowed (the behaviour of tokens made
// before it existed). With it, an action is allowed only on names that
// match one of its list's patterns; a missing list allows nothing. Write
// implies read: a COUNTER_SYNC subscribes and its reply carries the
// merged state, so a writer always reads.

// claimName is the JWT claim that holds the permissions.
const claimName = "topgun"

// maxPatterns bounds each list of patterns in a token (the issuer is
// trusted, but a token is checked on every request, so its cost is kept
// small and fixed).
const maxPatterns = 256

// action is what a frame wants to do with a name.
type action int

const (
	actRead  action = iota // COUNTER_REQUEST
	actWrite               // COUNTER_SYNC
	actLock                // LOCK_REQUEST, LOCK_RELEASE
)

func (a action) String() string {
	switch a {
	case actRead:
		return "read"
	case actWrite:
		return "write"
	}
	return "lock"
}

// perms are the patterns a token allows per action. A nil *perms allows
// everything (no claim, or no-auth mode).
type perms struct {
	read, write, lock []string
}

var errClaim = errors.New("invalid " + claimName + " claim")

// parsePerms reads the "topgun" claim of claims; nil (allow everything)
// when there is none. A claim of the wrong shape is an error, so the token
// is refused rather than granted more than its issuer meant.
func parsePerms(claims map[string]any) (*perms, error) {
	raw, ok := claims[claimName]
	if !ok || raw == nil {
		return nil, nil
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: not an object", errClaim)
	}
	p := &perms{}
	for key, v := range obj {
		var dst *[]string
		switch key {
		case "read":
			dst = &p.read
		case "write":
			dst = &p.write
		case "lock":
			dst = &p.lock
		default:
			continue // room for later keys; unknown keys grant nothing
		}
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s is not an array of patterns", errClaim, key)
		}
		if len(list) > maxPatterns {
			return nil, fmt.Errorf("%w: %s has more than %d patterns", errClaim, key, maxPatterns)
		}
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %s holds a pattern that is not a string", errClaim, key)
			}
			if err := validPattern(s); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", errClaim, key, err)
			}
			*dst = append(*dst, s)
		}
	}
	return p, nil
}

// validPattern checks a pattern: 1 to 256 bytes of the name alphabet
// (A-Z a-z 0-9 _ - . : /) and '*'.
func validPattern(s string) error {
	if len(s) == 0 || len(s) > 256 {
		return fmt.Errorf("pattern %q must be 1 to 256 bytes", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-' || c == '.' || c == ':' || c == '/' || c == '*') {
			return fmt.Errorf("pattern %q has a character outside A-Z a-z 0-9 _ - . : / *", s)
		}
	}
	return nil
}

// allows reports whether p allows a on name.
func (p *perms) allows(a action, name string) bool {
	if p == nil {
		return true
	}
	switch a {
	case actRead:
		return matchAny(p.read, name) || matchAny(p.write, name)
	case actWrite:
		return matchAny(p.write, name)
	}
	return matchAny(p.lock, name)
}

func matchAny(patterns []string, name string) bool {
	for _, pat := range patterns {
		if match(pat, name) {
			return true
		}
	}
	return false
}

// match reports whether name matches pattern, where '*' matches any run of
// bytes (empty too, and '/' and ':' among them) and every other byte
// matches itself. Names cannot contain '*', so there is no escaping. It
// runs in O(len(pattern)·len(name)) at worst, without recursion: on a
// mismatch it retries from the last '*', one byte further into name.
func match(pattern, name string) bool {
	p, n := 0, 0
	star, retry := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, retry = p, n
			p++
		case p < len(pattern) && pattern[p] == name[n]:
			p++
			n++
		case star >= 0:
			retry++
			p, n = star+1, retry
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
