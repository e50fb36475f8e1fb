package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// etcdTiming times the unary etcd requests of a client (KV, Lease, Txn…;
// watches and keep-alive streams are not requests) in
// topgun_etcd_request_seconds, by gRPC method and status code.
func etcdTiming(reg prometheus.Registerer) grpc.UnaryClientInterceptor {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "topgun_etcd_request_seconds",
		Help:    "Latency of this node's etcd requests (cluster mode), by gRPC method and status code.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"method", "code"})
	reg.MustRegister(h)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		// "/etcdserverpb.KV/Range" → "KV/Range": a fixed set of names.
		name := method[strings.LastIndex(method, ".")+1:]
		h.WithLabelValues(name, status.Code(err).String()).Observe(time.Since(start).Seconds())
		return err
	}
}

// sideServer is an HTTP listener next to the protocol's: metrics or
// pprof.
type sideServer struct {
	what string
	srv  *http.Server
	ln   net.Listener
}

// startSide serves h on addr.
func startSide(what, addr string, h http.Handler, log *slog.Logger) (*sideServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--%s %s: %w", what, addr, err)
	}
	s := &sideServer{what: what, ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what+" listener", "err", err)
		}
	}()
	log.Info(what+" listening", "addr", ln.Addr().String())
	return s, nil
}

func (s *sideServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		_ = s.srv.Close()
	}
}

// metricsMux serves h at /metrics.
func metricsMux(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	return mux
}

// pprofMux serves net/http/pprof's profiles under /debug/pprof/.
func pprofMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// loopbackAddr checks that addr listens on a loopback address only: the
// profiles show the process's memory and arguments.
func loopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (127.0.0.1, [::1] or localhost): profiles are served on loopback only", host)
	}
	return nil
}
