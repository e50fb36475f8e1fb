package storage_test

import (
	"testing"

	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/server/storage/storagetest"
)

func TestMemory(t *testing.T) {
	storagetest.Run(t, func(*testing.T) storage.Store { return storage.NewMemory() })
}
