//go:build !js

package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/topgun-go/topgun/sync/client"
)

func Example() {
	ctx := context.Background()
	c, err := client.New(client.Options{URL: "ws://localhost:8080/ws"})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx); err != nil { // no network wait: offline-first
		log.Fatal(err)
	}
	defer c.Close()

	likes, err := c.Counter("post:42:likes")
	if err != nil {
		log.Fatal(err)
	}
	stop := likes.Subscribe(func(v int64) { fmt.Println("likes:", v) })
	defer stop()
	likes.Increment() // applied locally at once, synced in the background

	lk, err := c.Lock("jobs/nightly")
	if err != nil {
		log.Fatal(err)
	}
	ok, err := lk.Acquire(ctx, 30*time.Second, client.WithWait(5*time.Second))
	switch {
	case err != nil:
		log.Fatal(err)
	case !ok:
		fmt.Println("someone else runs the job")
		return
	}
	defer lk.Unlock(ctx)
	lk.OnLost(func(reason string) { fmt.Println("lost the lock:", reason) })
	fmt.Println("fencing token", lk.FencingToken())
}
