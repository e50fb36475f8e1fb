// Package resultsmd edits the sections of bench/RESULTS.md that different
// commands produce: `make bench` rewrites the file but keeps the section
// `make chaos-results` wrote, and the other way round.
package resultsmd

import "strings"

// ChaosHeading starts the section of the chaos harness's figures.
const ChaosHeading = "## Chaos harness"

// bounds returns where the section headed heading starts and ends in doc
// (i < 0 when there is none): from its heading to the next "## " heading
// or the end.
func bounds(doc, heading string) (i, j int) {
	i = strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		return -1, -1
	}
	i++
	j = strings.Index(doc[i+len(heading):], "\n## ")
	if j < 0 {
		return i, len(doc)
	}
	return i, i + len(heading) + j + 1
}

// Section returns the section headed heading in doc, or "".
func Section(doc, heading string) string {
	i, j := bounds(doc, heading)
	if i < 0 {
		return ""
	}
	return doc[i:j]
}

// Splice replaces the section headed heading in doc with section, or
// appends section.
func Splice(doc, heading, section string) string {
	i, j := bounds(doc, heading)
	if i < 0 {
		return strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	return doc[:i] + section + doc[j:]
}
