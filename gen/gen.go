package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// config is what to generate from where; main fills it from flags.
type config struct {
	template           string // template package: import path or directory
	cacheDir, asyncDir string // output directories
	cachePkg, asyncPkg string // output package names; empty means the directory's base name
}

// file is one row of the table of what gen renders: a file and the pure
// function that renders it.
type file struct {
	path   string // output file
	render func(w io.Writer) error
}

// plan returns the table of files to render for t: for each backend X,
// x_gen.go in both output packages; errors_gen.go in both; and, when the
// async package is not cacheasync itself, runtime_gen.go with aliases of
// the runtime types.
func plan(t *tmpl, cache, async output) []file {
	var files []file
	for _, b := range t.backends {
		name := strings.ToLower(b.name) + "_gen.go"
		files = append(files,
			file{filepath.Join(cache.dir, name), func(w io.Writer) error { return renderBlocking(w, t, cache, b) }},
			file{filepath.Join(async.dir, name), func(w io.Writer) error { return renderAsync(w, t, async, b) }},
		)
	}
	files = append(files,
		file{filepath.Join(cache.dir, "errors_gen.go"), func(w io.Writer) error { return renderErrors(w, t, cache) }},
		file{filepath.Join(async.dir, "errors_gen.go"), func(w io.Writer) error { return renderErrors(w, t, async) }},
	)
	if async.path != runtimePath {
		files = append(files, file{filepath.Join(async.dir, "runtime_gen.go"), func(w io.Writer) error { return renderRuntime(w, async) }})
	}
	return files
}

// rendered is the content of one output file.
type rendered struct {
	path string
	data []byte
}

// generate loads the template and renders every file in memory. It also
// returns the stale files: generated files in the output directories that
// gen no longer renders (for a backend that was removed or renamed).
func generate(cfg config) (out []rendered, stale []string, err error) {
	cache, err := outputOf(cfg.cacheDir, cfg.cachePkg)
	if err != nil {
		return nil, nil, err
	}
	async, err := outputOf(cfg.asyncDir, cfg.asyncPkg)
	if err != nil {
		return nil, nil, err
	}
	if cache.path == async.path {
		return nil, nil, fmt.Errorf("gen: the blocking and async APIs need different directories; both are %s", cfg.cacheDir)
	}
	src, mdl, err := load(cfg.template)
	if err != nil {
		return nil, nil, fmt.Errorf("gen: %w", err)
	}
	t, err := analyze(src, mdl)
	if err != nil {
		return nil, nil, err
	}
	if cache.path == cachePath || async.path == runtimePath {
		if err := checkOpenNames(t); err != nil {
			return nil, nil, err
		}
	}
	for _, f := range plan(t, cache, async) {
		var buf bytes.Buffer
		if err := f.render(&buf); err != nil {
			return nil, nil, fmt.Errorf("gen: rendering %s: %w", f.path, err)
		}
		out = append(out, rendered{path: f.path, data: buf.Bytes()})
	}
	for _, dir := range []string{cache.dir, async.dir} {
		s, err := staleFiles(dir, out)
		if err != nil {
			return nil, nil, err
		}
		stale = append(stale, s...)
	}
	return out, stale, nil
}

// outputOf describes the output package in dir.
func outputOf(dir, name string) (output, error) {
	if name == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return output{}, err
		}
		name = filepath.Base(abs)
	}
	if !token.IsIdentifier(name) {
		return output{}, fmt.Errorf("gen: package name %q for %s is not an identifier; set it with a flag", name, dir)
	}
	path, err := importPathOf(dir)
	if err != nil {
		return output{}, fmt.Errorf("gen: %w", err)
	}
	return output{dir: filepath.Clean(dir), name: name, path: path}, nil
}

// staleFiles returns the *_gen.go files in dir that start with gen's header
// and are not in out.
func staleFiles(dir string, out []rendered) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*_gen.go"))
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, p := range paths {
		if slices.ContainsFunc(out, func(r rendered) bool { return r.path == p }) {
			continue
		}
		ok, err := generatedByGen(p)
		if err != nil {
			return nil, err
		}
		if ok {
			stale = append(stale, p)
		}
	}
	return stale, nil
}

// generatedByGen reports whether the file at path starts with gen's header.
func generatedByGen(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && err != io.EOF {
		return false, err
	}
	return strings.TrimRight(line, "\r\n") == "// "+header, nil
}

// write writes the files whose content changed and removes the stale ones.
func write(out []rendered, stale []string) error {
	for _, r := range out {
		old, err := os.ReadFile(r.path)
		if err == nil && bytes.Equal(old, r.data) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(r.path), 0o755); err != nil {
			return fmt.Errorf("gen: %w", err)
		}
		if err := os.WriteFile(r.path, r.data, 0o644); err != nil {
			return fmt.Errorf("gen: %w", err)
		}
	}
	for _, p := range stale {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("gen: removing stale file: %w", err)
		}
	}
	return nil
}

// drift compares out with the files on disk and describes each difference,
// with a diff of the first lines that differ; it returns nil when the disk
// is up to date.
func drift(out []rendered, stale []string) ([]string, error) {
	var msgs []string
	for _, r := range out {
		old, err := os.ReadFile(r.path)
		if errors.Is(err, fs.ErrNotExist) {
			msgs = append(msgs, fmt.Sprintf("%s: missing", r.path))
			continue
		} else if err != nil {
			return nil, err
		}
		if !bytes.Equal(old, r.data) {
			msgs = append(msgs, fmt.Sprintf("%s: differs from a fresh render:\n%s", r.path, diff(r.path, old, r.data)))
		}
	}
	for _, p := range stale {
		msgs = append(msgs, fmt.Sprintf("%s: stale: its backend no longer exists", p))
	}
	return msgs, nil
}
