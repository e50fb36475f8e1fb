package server

import (
	"github.com/topgun-go/topgun/server/locks"
	"github.com/topgun-go/topgun/sync/wire"
)

// acquireLock answers LOCK_REQUEST: the lock service validates, grants,
// queues or denies it.
func (s *Server) acquireLock(c *conn, r wire.LockRequest) { s.locks.Acquire(c, r) }

// releaseLock answers LOCK_RELEASE.
func (s *Server) releaseLock(c *conn, r wire.LockRelease) { s.locks.Release(c, r) }

// deny is the denial of r with reason (a rate-limited request).
func deny(r wire.LockRequest, reason string) wire.LockReleased { return locks.Deny(r, reason) }
