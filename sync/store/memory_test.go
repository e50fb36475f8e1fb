package store_test

import (
	"testing"

	"github.com/topgun-go/topgun/sync/store"
	"github.com/topgun-go/topgun/sync/store/storetest"
)

func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.NewMemory() })
	storetest.RunBounded(t, func(t *testing.T) store.Store { return store.NewMemory() })
}
