package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/topgun-go/topgun/crdt"
	"github.com/topgun-go/topgun/sync/transport"
	"github.com/topgun-go/topgun/sync/wire"
)

var listenRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// server is one topgun-server process, restartable with the same
// arguments (same data directory, same etcd).
type server struct {
	bin  string
	args []string
	logw io.Writer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	addr   string
}

// start launches the server and waits until it listens.
func (s *server) start() error {
	cmd := exec.Command(s.bin, s.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = s.logw
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(s.logw, line)
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	select {
	case a := <-addr:
		s.mu.Lock()
		s.addr = a
		s.mu.Unlock()
		return nil
	case <-exited:
		return fmt.Errorf("server exited while starting (log: see the run directory)")
	case <-time.After(60 * time.Second):
		s.kill()
		return fmt.Errorf("server did not listen within 60s")
	}
}

func (s *server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// kill sends SIGKILL (after SIGCONT, in case it is stopped) and waits.
func (s *server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// workerProc is a client worker child process.
type workerProc struct {
	index  int
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdin  io.WriteCloser
	exited chan struct{}
}

// startWorker re-executes self as worker i, feeding its events to h.
func startWorker(self []string, cfg workerConfig, h *history, logw io.Writer) (*workerProc, error) {
	b, _ := json.Marshal(cfg)
	cmd := exec.Command(self[0], self[1:]...)
	cmd.Env = append(os.Environ(), envWorker+"=1", envConfig+"="+string(b))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = logw
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &workerProc{index: cfg.Index, cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var m msg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				continue
			}
			if r := h.event(cfg.Index, m); r != nil {
				w.send(*r)
			}
		}
		_ = cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

func (w *workerProc) send(m msg) {
	b, _ := json.Marshal(m)
	w.mu.Lock()
	_, _ = w.stdin.Write(append(b, '\n'))
	w.mu.Unlock()
}

func (w *workerProc) signal(sig syscall.Signal) { _ = w.cmd.Process.Signal(sig) }

// end waits for the worker to exit within d, then SIGKILLs it.
func (w *workerProc) end(d time.Duration) {
	select {
	case <-w.exited:
	case <-time.After(d):
		_ = w.cmd.Process.Signal(syscall.SIGCONT)
		_ = w.cmd.Process.Signal(syscall.SIGKILL)
		<-w.exited
	}
}

// readState asks the server at addr for counter name's full state over a
// raw connection (no compact view, so every node's entries come back).
func readState(addr, name string) (crdt.State, error) {
	var last error
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := readStateOnce(ctx, addr, name)
		cancel()
		if err == nil {
			return st, nil
		}
		last = err
		time.Sleep(250 * time.Millisecond)
	}
	return crdt.State{}, last
}

func readStateOnce(ctx context.Context, addr, name string) (crdt.State, error) {
	cn, err := transport.Dial(ctx, "ws://"+addr+"/ws")
	if err != nil {
		return crdt.State{}, err
	}
	defer cn.Close()
	req, err := wire.Encode(wire.CounterRequest{Name: name})
	if err != nil {
		return crdt.State{}, err
	}
	if err := cn.Write(ctx, req); err != nil {
		return crdt.State{}, err
	}
	for {
		b, err := cn.Read(ctx)
		if err != nil {
			return crdt.State{}, err
		}
		m, err := wire.Decode(b)
		if err != nil {
			continue
		}
		if r, ok := m.(wire.CounterResponse); ok && r.Name == name {
			return r.State, nil
		}
	}
}

// urlsOf turns proxy addresses into WebSocket URLs.
func urlsOf(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		out = append(out, "ws://"+a+"/ws")
	}
	return out
}

func hostPort(url string) string {
	return strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://")
}

// stockView is what checkStock reads of the stock through a node's admin
// API (GET /v1/bounded/{name}; loopback without a token in --no-auth
// mode).
type stockView struct {
	Min   int64 `json:"min"`
	Value int64 `json:"value"`
}

// readStock reads the stock from the node at addr, trying again for a
// while (the node may be restarting).
func readStock(addr string) (stockView, error) {
	hc := http.Client{Timeout: 5 * time.Second}
	var last error
	for range 20 {
		var v stockView
		resp, err := hc.Get("http://" + addr + "/v1/bounded/" + stockName)
		if err == nil {
			err = func() error {
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
					return fmt.Errorf("%s: %s", resp.Status, b)
				}
				return json.NewDecoder(resp.Body).Decode(&v)
			}()
		}
		if err == nil {
			return v, nil
		}
		last = err
		time.Sleep(250 * time.Millisecond)
	}
	return stockView{}, last
}
