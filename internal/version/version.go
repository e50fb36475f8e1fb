// Package version holds the one version of topgun-go: the server, the Go
// module and both npm packages are released together under it (see
// CHANGELOG.md). A test keeps js/package.json, react/package.json and the
// changelog's newest release equal to it; changes made since are listed
// under "Unreleased" until the next release bumps all of them together.
package version

// Version is the release version, semantic versioning. Builds may stamp a
// more precise one with -ldflags "-X
// github.com/topgun-go/topgun/internal/version.Version=…".
var Version = "0.1.0"
