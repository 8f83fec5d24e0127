package hishel_test

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hishel-go/hishel"
	"github.com/hishel-go/hishel/cache"
)

// readmeTable returns the option names (the first column, in backquotes)
// of the README table under the heading that starts with heading.
func readmeTable(t *testing.T, heading string) []string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading)
	if !ok {
		t.Fatalf("README.md has no heading %q", heading)
	}
	var names []string
	inTable := false
	for _, line := range strings.Split(rest, "\n")[1:] {
		switch {
		case strings.HasPrefix(line, "| `"):
			inTable = true
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
			names = append(names, name)
		case inTable && !strings.HasPrefix(line, "|"):
			return names
		case strings.HasPrefix(line, "## "):
			return names
		}
	}
	return names
}

// The README's options tables list every option, and nothing else.
func TestReadmeOptionTables(t *testing.T) {
	for _, tc := range []struct {
		heading string
		typ     reflect.Type
	}{
		{"## Options (BoltOptions", reflect.TypeFor[cache.BoltOptions]()},
		{"## Transport options (hishel.Options", reflect.TypeFor[hishel.Options]()},
	} {
		listed := readmeTable(t, tc.heading)
		var fields []string
		for f := range tc.typ.Fields() {
			if f.IsExported() {
				fields = append(fields, f.Name)
			}
		}
		for _, f := range fields {
			if !slices.Contains(listed, f) {
				t.Errorf("README %q table lacks %s.%s", tc.heading, tc.typ.Name(), f)
			}
		}
		for _, n := range listed {
			if !slices.Contains(fields, n) {
				t.Errorf("README %q table lists %s, which %s does not have", tc.heading, n, tc.typ.Name())
			}
		}
	}
}
