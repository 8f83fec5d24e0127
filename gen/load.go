package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// listed is the part of `go list -json` output that gen reads.
type listed struct {
	ImportPath string
	Name       string
	Dir        string
	GoFiles    []string
	Imports    []string
	Export     string
	Error      *struct{ Err string }
}

const listFields = "ImportPath,Name,Dir,GoFiles,Imports,Export,Error"

// goList runs `go list -e -json` with args in dir and decodes its output.
func goList(dir string, args ...string) ([]listed, error) {
	cmd := exec.Command("go", append([]string{"list", "-e", "-json=" + listFields}, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, commandError(cmd, err, stderr.Bytes())
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list %s: decoding output: %w", strings.Join(args, " "), err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// source is a type-checked package with its syntax, as gen reads it.
type source struct {
	fset  *token.FileSet
	pkg   *types.Package
	info  *types.Info
	files []*ast.File // in the order go list reports them: sorted by name
	names []string    // base names of files
}

// exports maps import paths to export data files, as `go list -export`
// reports them.
type exports map[string]string

// listExports returns the export data of paths and of everything they
// import, building it if needed (the go command caches it).
func listExports(dir string, paths ...string) (exports, error) {
	pkgs, err := goList(dir, append([]string{"-export", "-deps"}, paths...)...)
	if err != nil {
		return nil, err
	}
	ex := exports{}
	for _, p := range pkgs {
		if p.Error != nil {
			return nil, fmt.Errorf("loading %s: %s", p.ImportPath, p.Error.Err)
		}
		ex[p.ImportPath] = p.Export
	}
	return ex, nil
}

// importer returns a types.Importer that reads export data from ex.
func (ex exports) importer(fset *token.FileSet) types.Importer {
	return importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		file, ok := ex[path]
		if !ok || file == "" {
			return nil, fmt.Errorf("no export data for %q", path)
		}
		return os.Open(file)
	})
}

// check parses and type-checks the files of the package path (named by
// their base names in dir), importing its dependencies with imp.
func check(fset *token.FileSet, imp types.Importer, path, dir string, names []string) (*source, error) {
	src := &source{fset: fset, names: names}
	for _, name := range names {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		src.files = append(src.files, f)
	}
	src.info = &types.Info{Defs: map[*ast.Ident]types.Object{}}
	var errs []error
	conf := types.Config{
		Importer: imp,
		Error: func(err error) {
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		},
	}
	pkg, _ := conf.Check(path, fset, src.files, src.info)
	if len(errs) > 0 {
		return nil, fmt.Errorf("type-checking %s: %w", path, errors.Join(errs...))
	}
	src.pkg = pkg
	return src, nil
}

// load loads the template package named by pattern (an import path, or a
// directory when it starts with "." or "/" or names one) and package model,
// whose sentinel errors are re-exported.
//
// A directory is listed from inside itself, so a template package in another
// module is loaded in that module's context.
func load(pattern string) (tmpl, mdl *source, err error) {
	dir, arg := ".", pattern
	if isDir(pattern) {
		if dir, err = filepath.Abs(pattern); err != nil {
			return nil, nil, err
		}
		arg = "."
	}
	pkgs, err := goList(dir, arg)
	if err != nil {
		return nil, nil, fmt.Errorf("loading template %s: %w", pattern, err)
	}
	if len(pkgs) != 1 {
		return nil, nil, fmt.Errorf("template %q matches %d packages; want one", pattern, len(pkgs))
	}
	tp := pkgs[0]
	if tp.Error != nil {
		return nil, nil, fmt.Errorf("loading template %s: %s", pattern, tp.Error.Err)
	}
	// Export data for the template's imports and for model, listed from the
	// template's directory so that its module resolves them.
	ex, err := listExports(tp.Dir, append([]string{modelPath}, tp.Imports...)...)
	if err != nil {
		return nil, nil, err
	}
	mp, err := goList(tp.Dir, modelPath)
	if err != nil {
		return nil, nil, err
	}
	fset := token.NewFileSet()
	imp := ex.importer(fset)
	if tmpl, err = check(fset, imp, tp.ImportPath, tp.Dir, tp.GoFiles); err != nil {
		return nil, nil, err
	}
	if mdl, err = check(fset, imp, modelPath, mp[0].Dir, mp[0].GoFiles); err != nil {
		return nil, nil, err
	}
	return tmpl, mdl, nil
}

// isDir reports whether pattern names a directory rather than an import path.
func isDir(pattern string) bool {
	if pattern == "." || pattern == ".." || filepath.IsAbs(pattern) ||
		strings.HasPrefix(pattern, "./") || strings.HasPrefix(pattern, "../") {
		return true
	}
	fi, err := os.Stat(pattern)
	return err == nil && fi.IsDir()
}

// importPathOf returns the import path that the package in dir has (or
// would have, for a directory that does not exist yet) in its module.
func importPathOf(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	// Find the nearest existing directory to ask the go command from.
	existing, rest := abs, ""
	for {
		if fi, err := os.Stat(existing); err == nil && fi.IsDir() {
			break
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			return "", fmt.Errorf("%s: no existing parent directory", dir)
		}
		rest = filepath.Join(filepath.Base(existing), rest)
		existing = parent
	}
	existing, err = filepath.EvalSymlinks(existing)
	if err != nil {
		return "", err
	}
	gomod, err := goOutput(existing, "env", "GOMOD")
	if err != nil {
		return "", err
	}
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("%s is not inside a Go module", dir)
	}
	edit, err := goOutput(existing, "mod", "edit", "-json", gomod)
	if err != nil {
		return "", err
	}
	var mod struct{ Module struct{ Path string } }
	if err := json.Unmarshal([]byte(edit), &mod); err != nil {
		return "", fmt.Errorf("reading %s: %w", gomod, err)
	}
	root, err := filepath.EvalSymlinks(filepath.Dir(gomod))
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(root, filepath.Join(existing, rest))
	if err != nil {
		return "", err
	}
	if rel == "." {
		return mod.Module.Path, nil
	}
	return mod.Module.Path + "/" + filepath.ToSlash(rel), nil
}

// goOutput runs the go command with args in dir and returns its trimmed
// standard output.
func goOutput(dir string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", commandError(cmd, err, stderr.Bytes())
	}
	return string(bytes.TrimSpace(out)), nil
}

// commandError describes the failure err of cmd, with its standard error.
func commandError(cmd *exec.Cmd, err error, stderr []byte) error {
	msg := strings.Join(cmd.Args, " ")
	if stderr = bytes.TrimSpace(stderr); len(stderr) > 0 {
		return fmt.Errorf("%s: %w\n%s", msg, err, stderr)
	}
	return fmt.Errorf("%s: %w", msg, err)
}
