package version

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"
)

// TestOneVersion: the npm packages and the changelog carry Version.
func TestOneVersion(t *testing.T) {
	for _, p := range []string{"../../js/package.json", "../../react/package.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var pkg struct {
			Version          string            `json:"version"`
			PeerDependencies map[string]string `json:"peerDependencies"`
		}
		if err := json.Unmarshal(b, &pkg); err != nil {
			t.Fatal(err)
		}
		if pkg.Version != Version {
			t.Errorf("%s has version %q, want %q", p, pkg.Version, Version)
		}
		if want := "^" + Version; pkg.PeerDependencies["@topgun-go/client"] != "" && pkg.PeerDependencies["@topgun-go/client"] != want {
			t.Errorf("%s wants @topgun-go/client %q, want %q", p, pkg.PeerDependencies["@topgun-go/client"], want)
		}
	}
	b, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	// The newest released entry (after "## Unreleased", if any).
	m := regexp.MustCompile(`(?m)^## ([0-9]\S*)`).FindSubmatch(b)
	if m == nil || string(m[1]) != Version {
		t.Errorf("CHANGELOG.md's newest release is %q, want %q", m, Version)
	}
}
