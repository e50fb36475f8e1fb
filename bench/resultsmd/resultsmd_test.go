package resultsmd

import "testing"

func TestSplice(t *testing.T) {
	doc := "# R\n\n## A\na\n\n## Chaos harness\nold\n\n## B\nb\n"
	if got := Section(doc, ChaosHeading); got != "## Chaos harness\nold\n\n" {
		t.Fatalf("Section = %q", got)
	}
	if got, want := Splice(doc, ChaosHeading, "## Chaos harness\nnew\n\n"), "# R\n\n## A\na\n\n## Chaos harness\nnew\n\n## B\nb\n"; got != want {
		t.Fatalf("Splice = %q, want %q", got, want)
	}
	if got, want := Splice("# R\n\n## A\na\n", ChaosHeading, "## Chaos harness\nnew\n"), "# R\n\n## A\na\n\n## Chaos harness\nnew\n"; got != want {
		t.Fatalf("Splice appending = %q, want %q", got, want)
	}
	if got := Section("# R\n\n## Chaos harness\nlast\n", ChaosHeading); got != "## Chaos harness\nlast\n" {
		t.Fatalf("Section at the end = %q", got)
	}
}
