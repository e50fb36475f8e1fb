package server

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/wire"
)

// BoundedJSON is the answer of GET /v1/bounded/{name}: the counter's bound
// and value, the rights the server (the broker) holds, and the replicas
// holding rights, most first (at most --admin-list-max of them).
type BoundedJSON struct {
	Name         string              `json:"name"`
	Min          int64               `json:"min"`
	Value        int64               `json:"value"`
	BrokerRights int64               `json:"brokerRights"`
	Holders      []BoundedHolderJSON `json:"holders"`
	Truncated    bool                `json:"truncated"`
}

// BoundedHolderJSON is one replica holding rights of a bounded counter, as
// the server knows it (sales it made offline and has not synced yet are
// not counted).
type BoundedHolderJSON struct {
	Node   string `json:"node"`
	Rights int64  `json:"rights"`
}

// ReclaimJSON is the answer of POST /v1/bounded/{name}/reclaim.
type ReclaimJSON struct {
	Name      string      `json:"name"`
	Node      string      `json:"node"`
	Reclaimed int64       `json:"reclaimed"`
	Counter   BoundedJSON `json:"counter"`
}

func (s *Server) boundedJSON(name string, st crdt.BState) (BoundedJSON, error) {
	b, err := crdt.BoundedFromState(st)
	if err != nil {
		return BoundedJSON{}, err
	}
	out := BoundedJSON{Name: name, Min: b.Min(), Value: b.Value(), BrokerRights: b.Rights(wire.BrokerNode), Holders: []BoundedHolderJSON{}}
	seen := map[string]bool{wire.BrokerNode: true}
	add := func(node string) {
		if seen[node] {
			return
		}
		seen[node] = true
		if r := b.Rights(node); r > 0 {
			out.Holders = append(out.Holders, BoundedHolderJSON{node, r})
		}
	}
	for node := range st.P {
		add(node)
	}
	for node := range st.T[wire.BrokerNode] {
		add(node)
	}
	slices.SortFunc(out.Holders, func(a, b BoundedHolderJSON) int {
		return cmp.Or(cmp.Compare(b.Rights, a.Rights), cmp.Compare(a.Node, b.Node))
	})
	if n := s.cfg.AdminListMax; len(out.Holders) > n {
		out.Holders, out.Truncated = out.Holders[:n], true
	}
	return out, nil
}

func (s *Server) adminBounded(w http.ResponseWriter, r *http.Request, name string) {
	st, ok, err := s.bounded.inspect(r.Context(), name)
	switch {
	case err != nil:
		s.unavailable(w, "bounded counter "+strconv.Quote(name)+" could not be read", err)
	case !ok:
		writeJSONError(w, http.StatusNotFound, "no bounded counter %q", name)
	default:
		out, err := s.boundedJSON(name, st)
		if err != nil {
			s.unavailable(w, "bounded counter "+strconv.Quote(name)+" could not be read", err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (s *Server) adminReclaim(w http.ResponseWriter, r *http.Request, name string) {
	var body struct {
		Node string `json:"node"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, adminMaxBody)).Decode(&body); err != nil {
		writeJSONError(w, http.StatusBadRequest, "body: want {\"node\": <the node id of a replica gone for good>}: %v", err)
		return
	}
	if err := wire.ValidNode(body.Node); err != nil {
		writeJSONError(w, http.StatusBadRequest, "node: %v", err)
		return
	}
	moved, st, ok, err := s.bounded.reclaim(name, body.Node)
	switch {
	case err != nil:
		s.unavailable(w, "bounded counter "+strconv.Quote(name)+" could not be changed", err)
		return
	case !ok:
		writeJSONError(w, http.StatusNotFound, "no bounded counter %q", name)
		return
	}
	s.log.Info("bounded-counter rights reclaimed by an operator", "name", name, "node", body.Node, "rights", moved, "remote", r.RemoteAddr)
	out, err := s.boundedJSON(name, st)
	if err != nil {
		s.unavailable(w, "bounded counter "+strconv.Quote(name)+" could not be read", err)
		return
	}
	writeJSON(w, http.StatusOK, ReclaimJSON{Name: name, Node: body.Node, Reclaimed: moved, Counter: out})
}
