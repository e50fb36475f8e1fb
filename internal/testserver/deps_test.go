package testserver_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestClientTestsDoNotLinkEtcd: the client's tests start the real server
// in-process through this package, and the server does not know about
// etcd (cmd/topgun-server picks the etcd backends), so no etcd package is
// linked into them.
func TestClientTestsDoNotLinkEtcd(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	const mod = "github.com/topgun-go/topgun"
	pkgs := []string{mod + "/sync/client/...", mod + "/internal/testserver"}
	out, err := exec.Command(goBin, append([]string{"list", "-deps", "-test"}, pkgs...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var bad []string
	n := 0
	for _, p := range strings.Fields(string(out)) {
		n++
		if strings.HasPrefix(p, "go.etcd.io/") {
			bad = append(bad, p)
		}
	}
	if n == 0 || !strings.Contains(string(out), mod+"/server\n") {
		t.Fatalf("go list gave no dependencies of the server:\n%s", out)
	}
	if len(bad) > 0 {
		t.Errorf("go list -deps -test %s includes etcd packages:\n  %s", strings.Join(pkgs, " "), strings.Join(bad, "\n  "))
	}
}
