// Command topgun-server runs the topgun-go server: PN-Counters and named
// locks over TopGun's wire protocol, stored in an embedded bbolt database.
//
// Flags (each also read from the environment variable in brackets):
//
//	--addr         listen address [TOPGUN_ADDR; PORT sets only the port]  (127.0.0.1:8080)
//	--data         data directory, or "memory" for no persistence [TOPGUN_DATA_DIR]  (./data)
//	--jwt-secret   HS256 secret or RSA public key PEM (RS256) [JWT_SECRET]
//	--no-auth      accept connections without a token [TOPGUN_NO_AUTH=1|true]
//	--lock-ttl     lease of a lock request without ttl [TOPGUN_LOCK_TTL]  (30s)
//	--lock-ttl-max longest lease and longest wait [TOPGUN_LOCK_TTL_MAX]  (1h)
//	--origins      comma-separated allowed WebSocket origins; empty = any [TOPGUN_ORIGINS]
//	--static       directory served at / for plain HTTP (the demo page) [TOPGUN_STATIC]
//	--log-level    debug, info, warn or error [TOPGUN_LOG_LEVEL]  (info)
//
// Limits (each refused with a clear error or close reason when hit):
//
//	--auth-timeout      time from connect to AUTH in JWT mode [TOPGUN_AUTH_TIMEOUT]  (10s)
//	--idle-timeout      close a connection silent this long [TOPGUN_IDLE_TIMEOUT]  (60s)
//	--token-leeway      clock skew allowed for a token's exp and nbf [TOPGUN_TOKEN_LEEWAY]  (60s)
//	--max-outbox        bytes queued for one connection [TOPGUN_MAX_OUTBOX]  (8388608)
//	--max-sync-nodes    node ids in one COUNTER_SYNC [TOPGUN_MAX_SYNC_NODES]  (1000)
//	--max-subscriptions counters per connection [TOPGUN_MAX_SUBSCRIPTIONS]  (10000)
//	--max-locks         locks held or awaited per connection [TOPGUN_MAX_LOCKS]  (1024)
//	--max-bounded       bounded counters per connection [TOPGUN_MAX_BOUNDED]  (1000)
//	--bounded-grant-max rights one BCOUNTER_RIGHTS may be granted [TOPGUN_BOUNDED_GRANT_MAX]  (1000)
//	--rate-limit        frames/s per connection [TOPGUN_RATE_LIMIT]  (20000)
//	--rate-burst        burst above it [TOPGUN_RATE_BURST]  (40000)
//
// Cluster mode (several nodes sharing an etcd cluster; docs/deployment.md):
//
//	--etcd                 comma-separated etcd endpoints; replaces --data [TOPGUN_ETCD]
//	--etcd-prefix          key prefix in etcd [TOPGUN_ETCD_PREFIX]  (/topgun)
//	--etcd-lease-ttl       lease of the locks granted through this node [TOPGUN_ETCD_LEASE_TTL]  (10s)
//	--etcd-request-timeout bound of one etcd request for a lock [TOPGUN_ETCD_REQUEST_TIMEOUT]  (2s)
//
// Admin API (docs/admin.md):
//
//	--admin-token    bearer token of the admin API under /v1/ [TOPGUN_ADMIN_TOKEN]
//	--admin-list-max most locks one GET /v1/locks returns [TOPGUN_ADMIN_LIST_MAX]  (1000)
//
// Without a JWT secret and without --no-auth it refuses to start.
//
// The same binary is a client of the admin API (cli.go):
//
//	topgun-server counters get NAME
//	topgun-server locks ls [PREFIX] | get NAME | release NAME | fence NAME TOKEN
//
// with --server (TOPGUN_SERVER, http://127.0.0.1:8080), --admin-token
// (TOPGUN_ADMIN_TOKEN) and --json.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/topgun-go/topgun/internal/version"
	"github.com/topgun-go/topgun/server"
	"github.com/topgun-go/topgun/server/locks"
	"github.com/topgun-go/topgun/server/locks/etcdlocks"
	"github.com/topgun-go/topgun/server/storage"
	"github.com/topgun-go/topgun/server/storage/boltstore"
	"github.com/topgun-go/topgun/server/storage/etcdstore"
)

func main() { os.Exit(runMain(os.Args[1:])) }

// runMain runs the command and returns its exit status.
func runMain(args []string) int {
	var err error
	if isCLI(args) {
		err = runCLI(args, os.Stdout, os.Stderr)
	} else {
		err = run(args)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0 // --help printed the usage: not a failure
	}
	if ee, ok := err.(*exitError); ok {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "topgun-server:", ee.err)
		}
		return ee.code
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "topgun-server:", err)
		return 1
	}
	return 0
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func run(args []string) error {
	fs := flag.NewFlagSet("topgun-server", flag.ContinueOnError)
	defAddr := env("TOPGUN_ADDR", "127.0.0.1:8080")
	if p := os.Getenv("PORT"); p != "" {
		host, _, err := net.SplitHostPort(defAddr)
		if err != nil {
			return fmt.Errorf("TOPGUN_ADDR %q: %w", defAddr, err)
		}
		defAddr = net.JoinHostPort(host, p)
	}
	noAuthEnv := env("TOPGUN_NO_AUTH", "")
	var durErr error
	dur := func(name, def string) time.Duration {
		d, err := time.ParseDuration(env(name, def))
		if err != nil && durErr == nil {
			durErr = fmt.Errorf("%s: %w", name, err)
		}
		return d
	}
	var intErr error
	integer := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if (err != nil || n <= 0) && intErr == nil {
			intErr = fmt.Errorf("%s=%q: want a positive integer", name, v)
		}
		return n
	}
	defTTL := dur("TOPGUN_LOCK_TTL", "30s")
	maxTTL := dur("TOPGUN_LOCK_TTL_MAX", "1h")
	leaseTTL := dur("TOPGUN_ETCD_LEASE_TTL", "10s")
	reqTimeout := dur("TOPGUN_ETCD_REQUEST_TIMEOUT", "2s")
	turnTimeout := dur("TOPGUN_ETCD_TURN_TIMEOUT", "2s")
	authTimeout := dur("TOPGUN_AUTH_TIMEOUT", "10s")
	idleTimeout := dur("TOPGUN_IDLE_TIMEOUT", "60s")
	tokenLeeway := dur("TOPGUN_TOKEN_LEEWAY", "60s")
	if durErr != nil {
		return durErr
	}
	maxOutbox := integer("TOPGUN_MAX_OUTBOX", 8<<20)
	maxSyncNodes := integer("TOPGUN_MAX_SYNC_NODES", 1000)
	maxSubs := integer("TOPGUN_MAX_SUBSCRIPTIONS", 10000)
	maxLocks := integer("TOPGUN_MAX_LOCKS", 1024)
	maxBounded := integer("TOPGUN_MAX_BOUNDED", 1000)
	grantMax := integer("TOPGUN_BOUNDED_GRANT_MAX", 1000)
	rateLimit := integer("TOPGUN_RATE_LIMIT", 20000)
	rateBurst := integer("TOPGUN_RATE_BURST", 40000)
	adminListMax := integer("TOPGUN_ADMIN_LIST_MAX", 1000)
	if intErr != nil {
		return intErr
	}
	var (
		etcdEPs     = fs.String("etcd", env("TOPGUN_ETCD", ""), "comma-separated etcd endpoints: run as a cluster node on etcd instead of --data (env TOPGUN_ETCD)")
		etcdPrefix  = fs.String("etcd-prefix", env("TOPGUN_ETCD_PREFIX", "/topgun"), "key prefix in etcd (env TOPGUN_ETCD_PREFIX)")
		etcdLease   = fs.Duration("etcd-lease-ttl", leaseTTL, "lease of the locks granted through this node: they are freed this long after it dies (env TOPGUN_ETCD_LEASE_TTL)")
		etcdTimeout = fs.Duration("etcd-request-timeout", reqTimeout, "bound of one etcd request made for a lock or a counter: a write that times out is refused (ERROR 500) and the client resends it (env TOPGUN_ETCD_REQUEST_TIMEOUT)")
		etcdTurn    = fs.Duration("etcd-turn-timeout", turnTimeout, "how long a queued lock request of another node may stay at the head of its queue before this node deletes it: its node is gone (env TOPGUN_ETCD_TURN_TIMEOUT)")
		addr        = fs.String("addr", defAddr, "listen address (env TOPGUN_ADDR, or PORT for the port only)")
		data        = fs.String("data", env("TOPGUN_DATA_DIR", "./data"), `data directory, or "memory" (env TOPGUN_DATA_DIR)`)
		secret      = fs.String("jwt-secret", env("JWT_SECRET", ""), "HS256 secret or RSA public key PEM for RS256 (env JWT_SECRET)")
		noAuth      = fs.Bool("no-auth", noAuthEnv == "1" || strings.EqualFold(noAuthEnv, "true"), "accept connections without a token (env TOPGUN_NO_AUTH=1)")
		lockTTL     = fs.Duration("lock-ttl", defTTL, "lease of a lock request without ttl (env TOPGUN_LOCK_TTL)")
		lockMax     = fs.Duration("lock-ttl-max", maxTTL, "longest lease and longest wait (env TOPGUN_LOCK_TTL_MAX)")
		origins     = fs.String("origins", env("TOPGUN_ORIGINS", ""), "comma-separated allowed WebSocket origin patterns; empty allows any (env TOPGUN_ORIGINS)")
		static      = fs.String("static", env("TOPGUN_STATIC", ""), "directory served at / for plain HTTP requests (env TOPGUN_STATIC)")
		logLevel    = fs.String("log-level", env("TOPGUN_LOG_LEVEL", "info"), "debug, info, warn or error (env TOPGUN_LOG_LEVEL)")
		metricsAddr = fs.String("metrics-addr", env("TOPGUN_METRICS_ADDR", ""), "serve /metrics on this address instead of the main listener (env TOPGUN_METRICS_ADDR)")
		pprofAddr   = fs.String("pprof", env("TOPGUN_PPROF", ""), "serve /debug/pprof on this loopback address, e.g. 127.0.0.1:6060 (env TOPGUN_PPROF); off when empty")

		fAuthTimeout  = fs.Duration("auth-timeout", authTimeout, "time from connect to AUTH in JWT mode (env TOPGUN_AUTH_TIMEOUT)")
		fIdleTimeout  = fs.Duration("idle-timeout", idleTimeout, "close a connection that sent nothing for this long (env TOPGUN_IDLE_TIMEOUT)")
		fTokenLeeway  = fs.Duration("token-leeway", tokenLeeway, "clock skew allowed for a token's exp and nbf; a connection closes at exp plus this (env TOPGUN_TOKEN_LEEWAY)")
		fMaxOutbox    = fs.Int("max-outbox", maxOutbox, "bytes that may wait to be written to one connection; the server stops reading it there and closes it (1008 slow consumer) past twice that (env TOPGUN_MAX_OUTBOX)")
		fMaxSyncNodes = fs.Int("max-sync-nodes", maxSyncNodes, "most node ids in one COUNTER_SYNC; more gets ERROR 413 (env TOPGUN_MAX_SYNC_NODES)")
		fMaxSubs      = fs.Int("max-subscriptions", maxSubs, "most counters one connection may subscribe to; more gets ERROR 413 (env TOPGUN_MAX_SUBSCRIPTIONS)")
		fMaxLocks     = fs.Int("max-locks", maxLocks, "most locks one connection may hold or wait for; more is denied with too_many (env TOPGUN_MAX_LOCKS)")
		fMaxBounded   = fs.Int("max-bounded", maxBounded, "most bounded counters one connection may use; more gets ERROR 413 (env TOPGUN_MAX_BOUNDED)")
		fGrantMax     = fs.Int("bounded-grant-max", grantMax, "most rights the broker grants for one BCOUNTER_RIGHTS request (env TOPGUN_BOUNDED_GRANT_MAX)")
		fRateLimit    = fs.Int("rate-limit", rateLimit, "sustained frames per second per connection; more gets ERROR 429 (env TOPGUN_RATE_LIMIT)")
		fRateBurst    = fs.Int("rate-burst", rateBurst, "burst of frames per connection above --rate-limit (env TOPGUN_RATE_BURST)")
		fAdminToken   = fs.String("admin-token", env("TOPGUN_ADMIN_TOKEN", ""), "bearer token of the admin API under /v1/ (docs/admin.md); without it, a JWT with \"topgun_admin\": true, or with --no-auth loopback clients only (env TOPGUN_ADMIN_TOKEN)")
		fAdminListMax = fs.Int("admin-list-max", adminListMax, "most locks one GET /v1/locks returns (env TOPGUN_ADMIN_LIST_MAX)")
	)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "topgun-server %s: PN-Counters and named locks over TopGun's wire protocol.\n\n", version.Version)
		fmt.Fprintf(fs.Output(), "Usage: topgun-server [flags]   (every flag also has an environment variable)\n")
		fmt.Fprintf(fs.Output(), "       topgun-server counters|locks ...   (admin commands: topgun-server locks --help)\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("topgun-server", version.Version)
		return nil
	}
	for name, v := range map[string]int{"max-outbox": *fMaxOutbox, "max-sync-nodes": *fMaxSyncNodes,
		"max-subscriptions": *fMaxSubs, "max-locks": *fMaxLocks, "max-bounded": *fMaxBounded, "bounded-grant-max": *fGrantMax, "rate-limit": *fRateLimit, "rate-burst": *fRateBurst, "admin-list-max": *fAdminListMax} {
		if v <= 0 {
			return fmt.Errorf("--%s %d: want a positive integer", name, v)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *pprofAddr != "" {
		if err := loopbackAddr(*pprofAddr); err != nil {
			return fmt.Errorf("--pprof: %w", err)
		}
	}
	reg := prometheus.NewRegistry()

	if *secret == "" && !*noAuth {
		return errors.New("no JWT secret: set --jwt-secret or JWT_SECRET, or run with --no-auth (TOPGUN_NO_AUTH=1) to accept every connection")
	}

	// The backends: counters, node owners and fencing in a store, locks in
	// a lock service. Package server only speaks the protocol over them.
	var (
		store        storage.Store
		lockSvc      locks.Backend // nil: in memory on store
		where        = *data
		storeTimeout time.Duration // 0: the server's default
	)
	if *etcdEPs != "" {
		etcdCli, err := clientv3.New(clientv3.Config{
			Endpoints:   splitList(*etcdEPs),
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
			// Keepalives find a dead member, so requests move to another.
			DialKeepAliveTime:    2 * time.Second,
			DialKeepAliveTimeout: 2 * time.Second,
			DialOptions:          []grpc.DialOption{grpc.WithChainUnaryInterceptor(etcdTiming(reg))},
		})
		if err != nil {
			return fmt.Errorf("etcd %s: %w", *etcdEPs, err)
		}
		defer etcdCli.Close()
		es, err := etcdstore.New(etcdCli, *etcdPrefix)
		if err != nil {
			return err
		}
		store, where, storeTimeout = es, "etcd "+*etcdEPs, *etcdTimeout
		lockSvc = etcdlocks.Backend(etcdCli, etcdlocks.Config{
			Prefix:         *etcdPrefix,
			LeaseTTL:       *etcdLease,
			RequestTimeout: *etcdTimeout,
			TurnTimeout:    *etcdTurn,
		})
	} else if *data == "memory" {
		store = storage.NewMemory()
	} else {
		bs, err := boltstore.Open(filepath.Join(*data, "topgun.db"), boltstore.Options{Timeout: 5 * time.Second})
		if err != nil {
			return fmt.Errorf("open data dir %s: %w", *data, err)
		}
		store = bs
	}
	defer store.Close()

	cfg := server.Config{
		Store:          store,
		JWTSecret:      *secret,
		NoAuth:         *noAuth,
		DefaultLockTTL: *lockTTL,
		MaxLockTTL:     *lockMax,
		Logger:         log,

		AuthTimeout:      *fAuthTimeout,
		IdleTimeout:      *fIdleTimeout,
		TokenLeeway:      *fTokenLeeway,
		MaxOutbox:        *fMaxOutbox,
		MaxSyncNodes:     *fMaxSyncNodes,
		MaxSubscriptions: *fMaxSubs,
		MaxLocks:         *fMaxLocks,
		MaxBounded:       *fMaxBounded,
		BoundedGrantMax:  int64(*fGrantMax),
		RateLimit:        float64(*fRateLimit),
		RateBurst:        *fRateBurst,
		AdminToken:       *fAdminToken,
		AdminListMax:     *fAdminListMax,

		Locks:        lockSvc,
		StoreTimeout: storeTimeout,

		Metrics:         reg,
		SeparateMetrics: *metricsAddr != "",
	}
	cfg.AllowedOrigins = splitList(*origins)
	if *static != "" {
		cfg.Static = http.FileServer(http.Dir(*static))
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if *metricsAddr != "" {
		ms, err := startSide("metrics-addr", *metricsAddr, metricsMux(srv.MetricsHandler()), log)
		if err != nil {
			ln.Close()
			return err
		}
		defer ms.close()
	}
	if *pprofAddr != "" {
		ps, err := startSide("pprof", *pprofAddr, pprofMux(), log)
		if err != nil {
			ln.Close()
			return err
		}
		defer ps.close()
	}
	mode := "jwt"
	if *noAuth {
		mode = "no-auth"
	}
	log.Info("listening", "addr", ln.Addr().String(), "data", where, "auth", mode, "version", version.Version)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
