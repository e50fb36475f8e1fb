package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/locks"
	"github.com/topgun-go/topgun/sync/wire"
)

// The admin API (docs/admin.md): operators inspect counters and locks,
// force-release locks, and downstream stores check fencing tokens. Every
// answer is JSON, errors included ({"error": "..."}).

// AdminClaim is the JWT claim that grants the admin API: a token verified
// like a connection's, carrying "topgun_admin": true.
const AdminClaim = "topgun_admin"

const (
	// adminTimeout bounds one admin request's work.
	adminTimeout = 10 * time.Second
	// adminMaxBody bounds an admin request's body.
	adminMaxBody = 4 << 10
)

// adminRoutes mounts the admin API on mux.
func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/v1/counters/{name}", s.admin(http.MethodGet, s.adminCounter))
	mux.HandleFunc("/v1/locks", s.admin(http.MethodGet, s.adminLockList))
	mux.HandleFunc("/v1/locks/{name}", s.admin(http.MethodGet, s.adminLock))
	mux.HandleFunc("/v1/locks/{name}/release", s.admin(http.MethodPost, s.adminRelease))
	mux.HandleFunc("/v1/locks/{name}/fence", s.admin(http.MethodPost, s.adminFence))
	mux.HandleFunc("/v1/bounded/{name}", s.admin(http.MethodGet, s.adminBounded))
	mux.HandleFunc("/v1/bounded/{name}/reclaim", s.admin(http.MethodPost, s.adminReclaim))
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, "no such admin endpoint: %s %s (see docs/admin.md)", r.Method, r.URL.Path)
	})
}

// admin wraps an admin handler: the method, the credential, and the name
// in the path (when there is one) are checked first.
func (s *Server) admin(method string, h func(w http.ResponseWriter, r *http.Request, name string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeJSONError(w, http.StatusMethodNotAllowed, "%s %s: use %s", r.Method, r.URL.Path, method)
			return
		}
		if code, msg := s.adminAccess(r); code != 0 {
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="topgun admin"`)
			}
			s.log.Debug("admin request refused", "remote", r.RemoteAddr, "path", r.URL.Path, "status", code, "reason", msg)
			writeJSONError(w, code, "%s", msg)
			return
		}
		name := r.PathValue("name")
		if r.Pattern != "/v1/locks" {
			if err := wire.ValidName(name); err != nil {
				writeJSONError(w, http.StatusBadRequest, "%v", err)
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		h(w, r.WithContext(ctx), name)
	}
}

// adminAccess checks the request's credential: it returns 0 when it may
// use the admin API, else the status and the reason. Config.AdminToken
// or a JWT with AdminClaim as a bearer token; without either (a --no-auth
// server with no admin token), only loopback clients.
func (s *Server) adminAccess(r *http.Request) (int, string) {
	if s.cfg.NoAuth && s.cfg.AdminToken == "" {
		if isLoopback(r.RemoteAddr) {
			return 0, ""
		}
		return http.StatusForbidden, "admin API: this server has no admin token (--admin-token) and answers only loopback clients"
	}
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return http.StatusUnauthorized, "admin API: credential required: Authorization: Bearer <admin token, or a JWT with \"" + AdminClaim + "\": true>"
	}
	scheme, token, _ := strings.Cut(authz, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return http.StatusUnauthorized, "admin API: the Authorization header must be Bearer <token>"
	}
	if s.cfg.AdminToken != "" {
		// Hashes first: the comparison then takes the same time whatever
		// the lengths.
		got, want := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(s.cfg.AdminToken))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			return 0, ""
		}
	}
	if s.verifier == nil || strings.Count(token, ".") != 2 {
		return http.StatusForbidden, "admin API: wrong admin token"
	}
	if _, err := s.verifier.verify(token); err != nil {
		return http.StatusForbidden, "admin API: JWT refused: " + authReason(err)
	}
	// Verified above; this reads its claims.
	var claims jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &claims); err != nil {
		return http.StatusForbidden, "admin API: JWT refused: " + authReason(err)
	}
	if v, _ := claims[AdminClaim].(bool); !v {
		return http.StatusForbidden, "admin API: the JWT lacks the \"" + AdminClaim + "\": true claim"
	}
	return 0, ""
}

// isLoopback reports whether a request's remote address is a loopback
// address.
func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// unavailable answers a failed backend call.
func (s *Server) unavailable(w http.ResponseWriter, what string, err error) {
	s.log.Warn("admin request", "what", what, "err", err)
	writeJSONError(w, http.StatusServiceUnavailable, "%s: %v; retry", what, err)
}

// CounterJSON is the admin API's view of a counter.
type CounterJSON struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
	// Writers is the number of node ids with entries.
	Writers int `json:"writers"`
}

func (s *Server) adminCounter(w http.ResponseWriter, r *http.Request, name string) {
	st, err := s.counters.inspect(r.Context(), name)
	if err != nil {
		s.unavailable(w, "counter "+strconv.Quote(name)+" could not be read", err)
		return
	}
	v, err := st.Value()
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, "counter %q: %v", name, err)
		return
	}
	writeJSON(w, http.StatusOK, CounterJSON{Name: name, Value: v, Writers: len(st.Nodes())})
}

// inspect returns name's current state without subscribing or keeping it
// in memory. A counter in memory is answered from there, made current
// first with its store when several nodes share it (refresh); any other
// is read from the store.
func (h *counterHub) inspect(ctx context.Context, name string) (crdt.State, error) {
	h.refresh(name)
	h.mu.Lock()
	e, ok := h.m[name]
	h.mu.Unlock()
	if ok {
		select {
		case <-e.loaded:
		case <-ctx.Done():
			return crdt.State{}, ctx.Err()
		}
		if e.loadErr == nil {
			e.mu.Lock()
			dead, st := e.dead, e.ctr.State()
			e.mu.Unlock()
			if !dead {
				return st, nil
			}
		}
	}
	return h.s.cfg.Store.LoadCounter(ctx, name)
}

// LockJSON is the admin API's view of a lock.
type LockJSON struct {
	Name         string      `json:"name"`
	Held         bool        `json:"held"`
	FencingToken uint64      `json:"fencingToken"`
	Holder       *HolderJSON `json:"holder"`
	// ExpiresInMs is null when the lock is free, or held through another
	// cluster node (which alone knows the lease).
	ExpiresInMs *int64 `json:"expiresInMs"`
	Waiters     int    `json:"waiters"`
}

// HolderJSON names a lock's holder.
type HolderJSON struct {
	// Conn is the connection id on the node holding the lock (absent
	// when that is another cluster node).
	Conn uint64 `json:"conn,omitempty"`
	User string `json:"user"`
	// Node is the cluster node's etcd lease id (absent on one node).
	Node string `json:"node,omitempty"`
}

func lockJSON(in locks.Info) LockJSON {
	out := LockJSON{Name: in.Name, Held: in.Held, FencingToken: in.FencingToken, Waiters: in.Waiters}
	if in.Held {
		out.Holder = &HolderJSON{Conn: in.Holder.Conn, User: in.Holder.User, Node: in.Holder.Node}
		if in.Expiry {
			ms := in.ExpiresIn.Milliseconds()
			out.ExpiresInMs = &ms
		}
	}
	return out
}

// LockListJSON is the answer of GET /v1/locks.
type LockListJSON struct {
	Locks []LockJSON `json:"locks"`
	// Truncated says that more locks matched than the limit.
	Truncated bool `json:"truncated"`
}

func (s *Server) adminLockList(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	prefix := q.Get("prefix")
	if prefix != "" {
		if err := wire.ValidName(prefix); err != nil {
			writeJSONError(w, http.StatusBadRequest, "prefix: %v", err)
			return
		}
	}
	limit := s.cfg.AdminListMax
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > s.cfg.AdminListMax {
			writeJSONError(w, http.StatusBadRequest, "limit %q: want 1 to %d (--admin-list-max)", v, s.cfg.AdminListMax)
			return
		}
		limit = n
	}
	infos, more, err := s.locks.List(r.Context(), prefix, limit)
	if err != nil {
		s.unavailable(w, "locks could not be listed", err)
		return
	}
	out := LockListJSON{Locks: make([]LockJSON, 0, len(infos)), Truncated: more}
	for _, in := range infos {
		out.Locks = append(out.Locks, lockJSON(in))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminLock(w http.ResponseWriter, r *http.Request, name string) {
	in, err := s.locks.Info(r.Context(), name)
	if err != nil {
		s.unavailable(w, "lock "+strconv.Quote(name)+" could not be read", err)
		return
	}
	writeJSON(w, http.StatusOK, lockJSON(in))
}

// ReleaseJSON is the answer of POST /v1/locks/{name}/release: the lock as
// it was when it was revoked.
type ReleaseJSON struct {
	Released bool     `json:"released"`
	Lock     LockJSON `json:"lock"`
}

func (s *Server) adminRelease(w http.ResponseWriter, r *http.Request, name string) {
	in, err := s.locks.Revoke(r.Context(), name)
	switch {
	case errors.Is(err, locks.ErrNotHeld):
		writeJSONError(w, http.StatusNotFound, "lock %q is not held", name)
	case err != nil:
		s.unavailable(w, "lock "+strconv.Quote(name)+" could not be released", err)
	default:
		s.log.Info("lock revoked by an operator", "name", name, "fencingToken", in.FencingToken,
			"conn", in.Holder.Conn, "user", in.Holder.User, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, ReleaseJSON{Released: true, Lock: lockJSON(in)})
	}
}

// FenceJSON is the answer of POST /v1/locks/{name}/fence: 200 with
// Current true, or 409 with Current false and the holder's token (0 when
// nobody holds the lock).
type FenceJSON struct {
	Current      bool   `json:"current"`
	FencingToken uint64 `json:"fencingToken"`
}

func (s *Server) adminFence(w http.ResponseWriter, r *http.Request, name string) {
	var body struct {
		Token *uint64 `json:"token"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, adminMaxBody))
	if err := dec.Decode(&body); err != nil {
		writeJSONError(w, http.StatusBadRequest, "body: want {\"token\": <fencing token, a positive integer>}: %v", err)
		return
	}
	if body.Token == nil {
		writeJSONError(w, http.StatusBadRequest, "body: want {\"token\": <fencing token, a positive integer>}: no token")
		return
	}
	cur, holder, err := s.locks.Fence(r.Context(), name, *body.Token)
	if err != nil {
		s.unavailable(w, "lock "+strconv.Quote(name)+" could not be read", err)
		return
	}
	code := http.StatusOK
	if !cur {
		code = http.StatusConflict
	}
	writeJSON(w, code, FenceJSON{Current: cur, FencingToken: holder})
}
