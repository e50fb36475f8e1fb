package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/topgun-go/topgun/server"
)

// The admin commands: a client of the server's admin API (docs/admin.md).
//
//	topgun-server counters get NAME
//	topgun-server locks ls [PREFIX]
//	topgun-server locks get NAME
//	topgun-server locks release NAME
//	topgun-server locks fence NAME TOKEN
//
// with --server (TOPGUN_SERVER), --admin-token (TOPGUN_ADMIN_TOKEN),
// --json, --limit and --timeout, before or after the arguments.

// exitError ends the command with a status other than 1; err, if any, is
// printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

const cliUsage = `Usage:
  topgun-server counters get NAME          value and number of writers of a counter
  topgun-server locks ls [PREFIX]          locks held or waited for (--limit)
  topgun-server locks get NAME             holder, fencing token, lease left, waiters
  topgun-server locks release NAME         force-release: the holder gets LOCK_LOST "revoked"
  topgun-server locks fence NAME TOKEN     exit 0 if TOKEN is the holder's, 2 if not
  topgun-server bounded get NAME           a bounded counter: value, the server's rights, who holds the rest
  topgun-server bounded reclaim NAME NODE  move NODE's rights back to the server: ONLY for a replica gone
                                           for good (sales it has not synced are lost; docs/bounded-counters.md)

Flags (before or after the arguments):
`

// isCLI reports whether args name an admin command rather than server
// flags.
func isCLI(args []string) bool {
	return len(args) > 0 && (args[0] == "counters" || args[0] == "locks" || args[0] == "bounded")
}

func runCLI(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("topgun-server "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("server", env("TOPGUN_SERVER", "http://127.0.0.1:8080"), "the server's base URL (env TOPGUN_SERVER)")
	token := fs.String("admin-token", env("TOPGUN_ADMIN_TOKEN", ""), "admin token, or a JWT with \"topgun_admin\": true (env TOPGUN_ADMIN_TOKEN)")
	asJSON := fs.Bool("json", false, "print the server's JSON answer")
	limit := fs.Int("limit", 0, "locks ls: most locks listed (0: the server's --admin-list-max)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound of the request")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), cliUsage)
		fs.PrintDefaults()
	}
	// Flags may follow the arguments: parse until none are left.
	var pos []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		rest = rest[1:]
	}
	cmd := args[0]
	if len(pos) > 0 {
		cmd += " " + pos[0]
		pos = pos[1:]
	}
	want := map[string][2]int{ // min and max arguments
		"counters get": {1, 1}, "locks ls": {0, 1}, "locks get": {1, 1},
		"locks release": {1, 1}, "locks fence": {2, 2},
		"bounded get": {1, 1}, "bounded reclaim": {2, 2},
	}
	n, ok := want[cmd]
	if !ok || len(pos) < n[0] || len(pos) > n[1] {
		fs.Usage()
		return fmt.Errorf("%q: unknown command or wrong number of arguments (see the usage above)", strings.TrimSpace(cmd+" "+strings.Join(pos, " ")))
	}
	a := &adminClient{base: strings.TrimSuffix(*base, "/"), token: *token, timeout: *timeout}
	out := func(body []byte, text func(*tabwriter.Writer) error) error {
		if *asJSON {
			_, err := stdout.Write(body)
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		if err := text(tw); err != nil {
			return err
		}
		return tw.Flush()
	}

	switch cmd {
	case "counters get":
		var c server.CounterJSON
		body, _, err := a.do("GET", "/v1/counters/"+url.PathEscape(pos[0]), nil, &c)
		if err != nil {
			return err
		}
		return out(body, func(w *tabwriter.Writer) error {
			fmt.Fprintln(w, "NAME\tVALUE\tWRITERS")
			fmt.Fprintf(w, "%s\t%d\t%d\n", c.Name, c.Value, c.Writers)
			return nil
		})
	case "locks ls":
		q := url.Values{}
		if len(pos) > 0 {
			q.Set("prefix", pos[0])
		}
		if *limit > 0 {
			q.Set("limit", strconv.Itoa(*limit))
		}
		var l server.LockListJSON
		body, _, err := a.do("GET", "/v1/locks?"+q.Encode(), nil, &l)
		if err != nil {
			return err
		}
		return out(body, func(w *tabwriter.Writer) error {
			lockTable(w, l.Locks...)
			if l.Truncated {
				fmt.Fprintln(w, "(more locks match: narrow the prefix or raise --limit)")
			}
			return nil
		})
	case "locks get":
		var l server.LockJSON
		body, _, err := a.do("GET", "/v1/locks/"+url.PathEscape(pos[0]), nil, &l)
		if err != nil {
			return err
		}
		return out(body, func(w *tabwriter.Writer) error { lockTable(w, l); return nil })
	case "bounded get":
		var b server.BoundedJSON
		body, _, err := a.do("GET", "/v1/bounded/"+url.PathEscape(pos[0]), nil, &b)
		if err != nil {
			return err
		}
		return out(body, func(w *tabwriter.Writer) error {
			boundedTable(w, b)
			return nil
		})
	case "bounded reclaim":
		var r server.ReclaimJSON
		body, _, err := a.do("POST", "/v1/bounded/"+url.PathEscape(pos[0])+"/reclaim", map[string]string{"node": pos[1]}, &r)
		if err != nil {
			return err
		}
		return out(body, func(w *tabwriter.Writer) error {
			fmt.Fprintf(w, "reclaimed %d rights of %s from %s\n", r.Reclaimed, r.Name, r.Node)
			boundedTable(w, r.Counter)
			return nil
		})
	case "locks release":
		var r server.ReleaseJSON
		body, _, err := a.do("POST", "/v1/locks/"+url.PathEscape(pos[0])+"/release", nil, &r)
		if err != nil {
			return err
		}
		return out(body, func(w *tabwriter.Writer) error {
			fmt.Fprintf(w, "released %s (fencing token %d, holder %s); its holder gets LOCK_LOST \"revoked\"\n",
				r.Lock.Name, r.Lock.FencingToken, holderText(r.Lock.Holder))
			return nil
		})
	default: // locks fence
		tok, err := strconv.ParseUint(pos[1], 10, 64)
		if err != nil {
			return fmt.Errorf("fencing token %q: want a positive integer", pos[1])
		}
		var f server.FenceJSON
		body, status, err := a.do("POST", "/v1/locks/"+url.PathEscape(pos[0])+"/fence", map[string]uint64{"token": tok}, &f)
		if err != nil {
			return err
		}
		if err := out(body, func(w *tabwriter.Writer) error {
			switch {
			case f.Current:
				fmt.Fprintf(w, "current: %d is the fencing token of %s's holder\n", tok, pos[0])
			case f.FencingToken == 0:
				fmt.Fprintf(w, "stale: %s is not held\n", pos[0])
			default:
				fmt.Fprintf(w, "stale: the holder of %s has fencing token %d\n", pos[0], f.FencingToken)
			}
			return nil
		}); err != nil {
			return err
		}
		if status == http.StatusConflict {
			return &exitError{code: 2}
		}
		return nil
	}
}

// boundedTable prints a bounded counter and its rights holders.
func boundedTable(w io.Writer, b server.BoundedJSON) {
	fmt.Fprintln(w, "NAME\tMIN\tVALUE\tSERVER RIGHTS")
	fmt.Fprintf(w, "%s\t%d\t%d\t%d\n", b.Name, b.Min, b.Value, b.BrokerRights)
	if len(b.Holders) > 0 {
		fmt.Fprintln(w, "\nNODE\tRIGHTS")
		for _, h := range b.Holders {
			fmt.Fprintf(w, "%s\t%d\n", h.Node, h.Rights)
		}
	}
	if b.Truncated {
		fmt.Fprintln(w, "(more replicas hold rights than --admin-list-max)")
	}
}

func holderText(h *server.HolderJSON) string {
	if h == nil {
		return "-"
	}
	var parts []string
	if h.User != "" {
		parts = append(parts, "user "+h.User)
	}
	if h.Conn != 0 {
		parts = append(parts, "conn "+strconv.FormatUint(h.Conn, 10))
	}
	if h.Node != "" {
		parts = append(parts, "node "+h.Node)
	}
	if len(parts) == 0 {
		return "anonymous"
	}
	return strings.Join(parts, " ")
}

func lockTable(w io.Writer, ls ...server.LockJSON) {
	fmt.Fprintln(w, "NAME\tHELD\tTOKEN\tHOLDER\tEXPIRES IN\tWAITERS")
	for _, l := range ls {
		token, expires := "-", "-"
		if l.Held {
			token = strconv.FormatUint(l.FencingToken, 10)
			expires = "(on its node)"
		}
		if l.ExpiresInMs != nil {
			expires = (time.Duration(*l.ExpiresInMs) * time.Millisecond).String()
		}
		fmt.Fprintf(w, "%s\t%v\t%s\t%s\t%s\t%d\n", l.Name, l.Held, token, holderText(l.Holder), expires, l.Waiters)
	}
}

// adminClient makes admin API requests.
type adminClient struct {
	base, token string
	timeout     time.Duration
}

// do sends the request and decodes a successful answer (2xx, or 409 of a
// fence check) into out; otherwise it returns the server's error message.
func (a *adminClient) do(method, path string, in, out any) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return nil, 0, fmt.Errorf("--server %q: %w", a.base, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, resp.StatusCode, err
	}
	var e struct {
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(b, &e); jerr != nil {
		return nil, resp.StatusCode, fmt.Errorf("%s %s: %s, not a topgun admin answer: %.200s", method, a.base+path, resp.Status, b)
	}
	if e.Error != "" {
		return nil, resp.StatusCode, fmt.Errorf("server: %s (%s)", e.Error, resp.Status)
	}
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusConflict {
		return nil, resp.StatusCode, errors.New("server: " + resp.Status)
	}
	return b, resp.StatusCode, json.Unmarshal(b, out)
}
