//go:build !js

// Command go-worker is a job worker built on topgun-go's Go client engine:
// it takes a distributed lock for every job, does the job with the lock's
// fencing token, counts it in the PN-Counter "jobs:done", makes the count
// durable (Persist) before acknowledging the job, and stops after -jobs
// jobs. Close then delivers what the server has not confirmed yet; what it
// cannot deliver stays in the -store file and the next run sends it.
//
//	go run ./examples/go-worker -url ws://127.0.0.1:8080/ws -jobs 3
//
// It prints one line per job and, at the end, "delivered" or the
// *client.UndeliveredError. Exit status: 0 when everything was delivered,
// 2 when writes were left undelivered (they are kept in the file), 1 on any
// other failure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/topgun-go/topgun/sync/client"
	"github.com/topgun-go/topgun/sync/store/filestore"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8080/ws", "server WebSocket URL")
	storePath := flag.String("store", "go-worker.db", "file of the durable client store (sync/store/filestore)")
	jobs := flag.Int("jobs", 3, "number of jobs to run before stopping")
	token := flag.String("token", os.Getenv("TOPGUN_TOKEN"), "JWT for servers started with --jwt-secret (default $TOPGUN_TOKEN; none for --no-auth)")
	lockName := flag.String("lock", "job-queue:partition-0", "name of the lock taken for every job")
	ttl := flag.Duration("ttl", 10*time.Second, "lease of the lock; the server frees it after this even if the worker dies")
	wait := flag.Duration("wait", 10*time.Second, "how long to wait for the connection and the lock before giving up")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("go-worker: ")
	if *jobs < 0 {
		log.Fatal("-jobs must be ≥ 0")
	}
	os.Exit(run(*url, *storePath, *token, *lockName, *jobs, *ttl, *wait))
}

func run(url, storePath, token, lockName string, jobs int, ttl, wait time.Duration) int {
	// Ctrl-C or SIGTERM stops between jobs; Close below still delivers.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// A durable store: the node id and every write live in this file, so
	// writes made while the server is out of reach survive a restart.
	st, err := filestore.Open(storePath, filestore.Options{})
	if err != nil {
		log.Print(err) // ErrLocked: another worker uses this file
		return 1
	}
	// The client does not close a store it was given: close it last.
	defer st.Close()

	c, err := client.New(client.Options{URL: url, Store: st, Token: token})
	if err != nil {
		log.Print(err)
		return 1
	}
	if err := c.Start(ctx); err != nil { // loads the file; does not wait for the network
		log.Print(err)
		return 1
	}
	// Connection problems are reported, never only logged inside the engine
	// (docs/errors.md); the client keeps retrying on its own.
	offErr := c.OnError(func(err error) { log.Print(err) })
	defer offErr()

	status := doJobs(ctx, c, lockName, jobs, ttl, wait)

	// Close delivers pending writes first (Options.CloseTimeout, 3 s).
	var ue *client.UndeliveredError
	switch err := c.Close(); {
	case errors.As(err, &ue):
		fmt.Printf("undelivered: %v (kept in %s: %v)\n", ue, storePath, ue.Kept)
		if status == 0 {
			status = 2
		}
	case err != nil:
		log.Print(err)
		status = 1
	default:
		fmt.Println("delivered")
	}
	return status
}

func doJobs(ctx context.Context, c *client.Client, lockName string, jobs int, ttl, wait time.Duration) int {
	done, err := c.Counter("jobs:done")
	if err != nil {
		log.Print(err)
		return 1
	}
	lock, err := c.Lock(lockName)
	if err != nil {
		log.Print(err)
		return 1
	}
	// A lease can end without Unlock: it expired (the job took longer than
	// ttl) or the connection dropped. A real worker stops writing then.
	offLost := lock.OnLost(func(reason string) { log.Printf("lost %s: %s", lockName, reason) })
	defer offLost()

	for i := 1; i <= jobs; i++ {
		// Waits for a ready connection, then queues behind the current
		// holder for up to wait.
		actx, cancel := context.WithTimeout(ctx, wait)
		ok, err := lock.Acquire(actx, ttl, client.WithWait(wait))
		cancel()
		if err != nil {
			log.Printf("job %d: lock %s: %v", i, lockName, err)
			return 1
		}
		if !ok {
			log.Printf("job %d: lock %s still held by another client after %v", i, lockName, wait)
			return 1
		}
		fence := lock.FencingToken() // strictly increasing per grant

		// The job itself: a real one passes fence with every write to the
		// resource it protects, which refuses tokens older than the last.
		time.Sleep(10 * time.Millisecond)

		v, err := done.AddAndGet(1)
		if err != nil {
			log.Print(err)
			return 1
		}
		// From here on a crash cannot lose the count: it is in the file
		// (delivery to the server goes on in the background).
		if err := c.Persist(ctx); err != nil {
			log.Print(err)
			return 1
		}
		fmt.Printf("job %d/%d: fencing token %d, jobs:done = %d (persisted)\n", i, jobs, fence, v)
		// ... acknowledge the job to the queue here ...

		if err := lock.Unlock(ctx); err != nil {
			log.Print(err)
			return 1
		}
	}
	return 0
}
