package server

import (
	"fmt"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/server/locks"
	"github.com/topgun-go/topgun/sync/wire"
)

// The lock service and the counter hub do not see *conn: they see a
// locks.Holder and a subscriber. This file is what a connection offers
// them.
var (
	_ locks.Holder = (*conn)(nil)
	_ subscriber   = (*conn)(nil)
)

// subscriber is what the counter hub needs of a connection: an identity
// (the interface value; User for node ownership), a way to send it
// messages and counter updates, and the subscriptions it keeps.
type subscriber interface {
	ID() uint64
	User() string
	Send(m wire.Message)
	// viewNode returns the node id of a connection that negotiated compact
	// views.
	viewNode() (string, bool)
	// pushUpdate tells the subscriber that e changed by delta.
	pushUpdate(e *counterEntry, delta crdt.State)
	// dropPending forgets the updates of e queued for it (it unsubscribed).
	dropPending(e *counterEntry)
	// subscriptions is the subscriber's own map of the counters it
	// subscribes to, by name; its reader goroutine only.
	subscriptions() map[string]*counterEntry
	// awaiting counts replies queued for it that wait for durability:
	// +1 when one is queued, -1 when it was sent.
	awaiting(n int64)
}

// ID implements locks.Holder and subscriber: the connection id.
func (c *conn) ID() uint64 { return c.id }

// User implements locks.Holder and subscriber: the JWT subject, "" in
// no-auth mode.
func (c *conn) User() string { return c.user }

// Send implements locks.Holder and subscriber.
func (c *conn) Send(m wire.Message) { c.send(m) }

func (c *conn) subscriptions() map[string]*counterEntry { return c.subs }

func (c *conn) awaiting(n int64) {
	if c.pending.Add(n); n < 0 {
		c.signalSpace()
	}
}

// sendError sends sub an ERROR frame.
func sendError(sub interface{ Send(wire.Message) }, code uint32, format string, args ...any) {
	sub.Send(wire.Error{Code: code, Message: fmt.Sprintf(format, args...)})
}
