package locks_test

import (
	"testing"

	"github.com/topgun-go/topgun/server/locks"
	"github.com/topgun-go/topgun/server/locks/locktest"
	"github.com/topgun-go/topgun/server/storage"
)

func TestMemory(t *testing.T) {
	locktest.Run(t, func(t *testing.T) locks.Backend {
		store := storage.NewMemory()
		t.Cleanup(func() { store.Close() })
		return locks.Memory(store)
	})
}
