package server

import (
	"github.com/topgun-go/topgun/server/locks"
	"github.com/topgun-go/topgun/sync/wire"
)

// The lock service does not see *conn: it sees a locks.Holder. This file
// is what a connection offers it.
var _ locks.Holder = (*conn)(nil)

// ID implements locks.Holder: the connection id.
func (c *conn) ID() uint64 { return c.id }

// User implements locks.Holder: the JWT subject, "" in
// no-auth mode.
func (c *conn) User() string { return c.user }

// Send implements locks.Holder.
func (c *conn) Send(m wire.Message) { c.send(m) }
