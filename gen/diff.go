package main

import (
	"fmt"
	"strings"
)

const (
	diffContext  = 3  // unchanged lines shown around a change
	diffMaxLines = 60 // lines of diff shown, at most
)

// diff returns a unified diff from old (the file on disk) to new (a fresh
// render), cut after its first diffMaxLines lines.
func diff(name string, old, new []byte) string {
	a, b := lines(string(old)), lines(string(new))
	ops := editScript(a, b)

	var out strings.Builder
	fmt.Fprintf(&out, "--- %s (on disk)\n+++ %s (rendered)\n", name, name)
	shown := 0
	for i := 0; i < len(ops); {
		// Find the next change and the hunk around it.
		for i < len(ops) && ops[i].kind == ' ' {
			i++
		}
		if i == len(ops) {
			break
		}
		start := max(i-diffContext, 0)
		end := i
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*diffContext {
				end = min(end+diffContext, len(ops))
				break
			}
			end = run
		}
		fmt.Fprintf(&out, "@@ -%d +%d @@\n", ops[start].a+1, ops[start].b+1)
		for _, op := range ops[start:end] {
			if shown == diffMaxLines {
				out.WriteString("... (diff cut)\n")
				return out.String()
			}
			fmt.Fprintf(&out, "%c%s\n", op.kind, op.line)
			shown++
		}
		i = end
	}
	return out.String()
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// edit is one line of an edit script: kept (' '), removed ('-') or added
// ('+'); a and b are its line indexes in the old and new text.
type edit struct {
	kind byte
	line string
	a, b int
}

// editScript returns a shortest edit script from a to b, found through
// their longest common subsequence (generated files are small).
func editScript(a, b []string) []edit {
	// lcs[i][j] is the length of the LCS of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []edit
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, edit{' ', a[i], i, j})
			i++
			j++
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, edit{'-', a[i], i, j})
			i++
		default:
			ops = append(ops, edit{'+', b[j], i, j})
			j++
		}
	}
	return ops
}
