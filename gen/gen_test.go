package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedUpToDate renders the repository's template again, in memory,
// and fails on any byte of difference with the files checked in under
// cache/ and cacheasync/ (what `go run ./gen -check` does).
func TestGeneratedUpToDate(t *testing.T) {
	out, stale, err := generate(config{template: "../template", cacheDir: "../cache", asyncDir: "../cacheasync"})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := drift(out, stale)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		t.Error(m)
	}
	if len(msgs) > 0 {
		t.Log("run go generate ./... from the module root")
	}
}

// TestFixture proves that gen works on a template package in another
// module: it renders gen/testdata/fixture/store into a temporary module that
// requires this one, checks -check and stale-file removal there, and runs a
// program that calls the store through both generated APIs.
func TestFixture(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module with the go command")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, sub := range []string{"store", "check"} {
		copyDir(t, filepath.Join("testdata", "fixture", sub), filepath.Join(dir, sub))
	}
	gomod := "module example.com/fixture\n\ngo 1.26\n\nrequire github.com/hishel-go/hishel v0.0.0\n\nreplace github.com/hishel-go/hishel => " + root + "\n"
	writeFile(t, filepath.Join(dir, "go.mod"), gomod)
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "go.sum"), string(sum))
	// Offline: everything comes from the module cache and the replace.
	t.Setenv("GOFLAGS", "-mod=mod")
	t.Setenv("GOPROXY", "off")
	t.Setenv("GOSUMDB", "off")
	t.Setenv("GOWORK", "off")

	cacheDir, asyncDir := filepath.Join(dir, "memcache"), filepath.Join(dir, "memasync")
	args := []string{"-template", filepath.Join(dir, "store"), "-cache", cacheDir, "-async", asyncDir}
	gen := func(extra ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		code := run(append(args, extra...), &stdout, &stderr)
		return code, stdout.String() + stderr.String()
	}

	if code, out := gen(); code != 0 {
		t.Fatalf("gen %s = %d; want 0\n%s", strings.Join(args, " "), code, out)
	}
	for _, f := range []string{"memcache/mem_gen.go", "memcache/errors_gen.go", "memasync/mem_gen.go", "memasync/errors_gen.go", "memasync/runtime_gen.go"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("after gen: %v", err)
		}
	}
	if code, out := gen("-check"); code != 0 {
		t.Fatalf("gen -check right after gen = %d; want 0\n%s", code, out)
	}

	// Drift: an edited file and a stale one are reported, and gen repairs them.
	edited := filepath.Join(cacheDir, "mem_gen.go")
	orig, err := os.ReadFile(edited)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, edited, strings.Replace(string(orig), "return m.s.Get(ctx, key)", "return m.s.Get(ctx, key+\"!\")", 1))
	stale := filepath.Join(asyncDir, "gone_gen.go")
	writeFile(t, stale, "// "+header+"\n\npackage memasync\n")
	kept := filepath.Join(asyncDir, "hand_gen.go") // not gen's: no header
	writeFile(t, kept, "package memasync\n")
	code, out := gen("-check")
	if code != 1 {
		t.Errorf("gen -check after edits = %d; want 1\n%s", code, out)
	}
	for _, want := range []string{
		"-\treturn m.s.Get(ctx, key+\"!\")",
		"+\treturn m.s.Get(ctx, key)",
		"gone_gen.go: stale",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("gen -check after edits: output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hand_gen.go") {
		t.Errorf("gen -check reports hand_gen.go, which gen did not write:\n%s", out)
	}
	if code, out := gen(); code != 0 {
		t.Fatalf("gen after edits = %d; want 0\n%s", code, out)
	}
	if got, _ := os.ReadFile(edited); !bytes.Equal(got, orig) {
		t.Errorf("gen did not restore %s", edited)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale %s: Stat error = %v; want not exist", stale, err)
	}
	if err := os.Remove(kept); err != nil {
		t.Errorf("gen removed %s, which it did not write: %v", kept, err)
	}

	goCmd(t, dir, "vet", "./...")
	if out := goCmd(t, dir, "run", "./check"); out != "ok\n" {
		t.Errorf("go run ./check = %q; want %q", out, "ok\n")
	}
}

func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(to, e.Name()), string(data))
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{{"-nosuchflag"}, {"extra"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("run(%q) = %d; want 2", args, code)
		}
	}
}

func TestDiff(t *testing.T) {
	old := "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n"
	new := "a\nb\nc\nd\nE\nf\ng\nh\ni\nj\nk\n"
	want := `--- f (on disk)
+++ f (rendered)
@@ -2 +2 @@
 b
 c
 d
-e
+E
 f
 g
 h
 i
 j
+k
`
	if got := diff("f", []byte(old), []byte(new)); got != want {
		t.Errorf("diff(f, old, new) = \n%s; want\n%s", got, want)
	}
}

// TestToolDirective proves README's out-of-module flow from a scratch
// module, with the go command as a user runs it: go get -tool adds gen
// and its dependencies (jennifer) to the module, go tool gen renders a
// template of the module, go mod tidy completes go.sum, and the generated
// APIs build and run. Offline: the module cache serves every module, and a
// replace stands for the published version of this one.
func TestToolDirective(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, sub := range []string{"store", "check"} {
		copyDir(t, filepath.Join("testdata", "fixture", sub), filepath.Join(dir, sub))
	}
	t.Setenv("GOFLAGS", "-buildvcs=false")
	t.Setenv("GOPROXY", "off")
	t.Setenv("GOSUMDB", "off")
	t.Setenv("GOWORK", "off")
	for _, args := range [][]string{
		{"mod", "init", "example.com/fixture"},
		{"mod", "edit", "-require=github.com/hishel-go/hishel@v0.0.0", "-replace=github.com/hishel-go/hishel=" + root},
		{"get", "-tool", "github.com/hishel-go/hishel/gen@v0.0.0"},
		{"tool", "gen", "-template", "./store", "-cache", "./memcache", "-async", "./memasync"},
		// -e: offline, the tests of dependencies' dependencies (bbolt's
		// testify) cannot be looked up; online, go mod tidy finds them.
		{"mod", "tidy", "-e"},
		{"vet", "./..."},
	} {
		goCmd(t, dir, args...)
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(gomod), "\ntool github.com/hishel-go/hishel/gen\n") {
		t.Errorf("go.mod after go get -tool lacks the tool line:\n%s", gomod)
	}
	if out := goCmd(t, dir, "run", "./check"); out != "ok\n" {
		t.Errorf("go run ./check = %q; want %q", out, "ok\n")
	}
	if out := goCmd(t, dir, "tool", "gen", "-template", "./store", "-cache", "./memcache", "-async", "./memasync", "-check"); !strings.Contains(out, "up to date") {
		t.Errorf("go tool gen -check = %q; want the files up to date", out)
	}
}
