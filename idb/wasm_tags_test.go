//go:build !js

package idb

import (
	"bufio"
	"go/build/constraint"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWasmBuildTags: every Go file of the browser-only packages (idb/ and
// wasm/) carries a //go:build constraint that holds for js/wasm and for no
// other platform, so they never leak into a native build. This file is the
// one exception: it runs natively, where it can read the file system.
func TestWasmBuildTags(t *testing.T) {
	checked := 0
	for _, dir := range []string{".", filepath.Join("..", "wasm")} {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			continue
		}
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if n := d.Name(); path != dir && (n == "node_modules" || n == "testdata" || strings.HasPrefix(n, ".")) {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || (dir == "." && path == "wasm_tags_test.go") {
				return nil
			}
			checked++
			expr, err := buildConstraint(path)
			if err != nil {
				return err
			}
			if expr == nil {
				t.Errorf("%s: no //go:build line; want //go:build js && wasm", path)
			} else if !onlyJSWasm(expr) {
				t.Errorf("%s: //go:build %s; want a constraint that holds only for js && wasm", path, expr)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked == 0 {
		t.Fatal("no files checked")
	}
}

// buildConstraint returns the //go:build expression of a file's header
// (the comments before the package clause), or nil without one.
func buildConstraint(path string) (constraint.Expr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "//") {
			return nil, nil // the header ended
		}
		if constraint.IsGoBuild(line) {
			return constraint.Parse(line)
		}
	}
	return nil, sc.Err()
}

// onlyJSWasm reports whether expr holds for js/wasm and for no other
// GOOS/GOARCH pair tried.
func onlyJSWasm(expr constraint.Expr) bool {
	eval := func(tags ...string) bool {
		return expr.Eval(func(tag string) bool {
			for _, t := range tags {
				if t == tag {
					return true
				}
			}
			return false
		})
	}
	if !eval("js", "wasm") {
		return false
	}
	for _, tags := range [][]string{
		{}, {"linux", "amd64", "unix"}, {"darwin", "arm64", "unix"}, {"windows", "amd64"},
		{"wasip1", "wasm"}, {"js"}, {"wasm"}, {"js", "amd64"},
	} {
		if eval(tags...) {
			return false
		}
	}
	return true
}
