//go:build !js

package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/store/filestore"
)

// A worker keeps its counters in a file, so writes made while the server
// is out of reach survive a restart and are delivered by the next run.
// (Compiled only: it needs a server.)
func Example() {
	ctx := context.Background()
	st, err := filestore.Open("/var/lib/worker/topgun-client.db", filestore.Options{})
	if err != nil {
		log.Fatal(err) // ErrLocked: another instance runs
	}
	defer st.Close() // runs after c.Close, which leaves st open

	c, err := client.New(client.Options{URL: "wss://counters.example.com/ws", Store: st})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx); err != nil { // loads the file; no network wait
		log.Fatal(err)
	}
	defer func() {
		// Close tries to deliver for Options.CloseTimeout; what is left
		// stays in the file for the next Start.
		if err := c.Close(); errors.Is(err, client.ErrUndelivered) {
			log.Print(err)
		}
	}()

	done, err := c.Counter("jobs:done")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := done.AddAndGet(1); err != nil {
		log.Fatal(err)
	}
	// Before acknowledging the job elsewhere, make the count durable: from
	// here on a crash cannot lose it.
	if err := c.Persist(ctx); err != nil {
		log.Fatal(err)
	}
}

// Writes made offline are in the file after a restart. The server here
// never answers; the restarted client would deliver them once it does.
func Example_restart() {
	dir, err := os.MkdirTemp("", "filestore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "client.db")
	ctx := context.Background()

	run := func(delta int64) {
		st, err := filestore.Open(path, filestore.Options{})
		if err != nil {
			log.Fatal(err)
		}
		defer st.Close()
		c, err := client.New(client.Options{
			URL:          "ws://127.0.0.1:1/ws", // nothing listens there
			Store:        st,
			CloseTimeout: -1, // do not wait for the server
		})
		if err != nil {
			log.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			log.Fatal(err)
		}
		cnt, err := c.Counter("jobs:done")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("started with", cnt.Get())
		if _, err := cnt.AddAndGet(delta); err != nil {
			log.Fatal(err)
		}
		var ue *client.UndeliveredError
		if err := c.Close(); errors.As(err, &ue) {
			fmt.Println("undelivered, kept in the file:", ue.Kept)
		}
	}
	run(3)
	run(2)
	// Output:
	// started with 0
	// undelivered, kept in the file: true
	// started with 3
	// undelivered, kept in the file: true
}
