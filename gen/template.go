package main

import (
	"fmt"
	"go/ast"
	"go/printer"
	"go/token"
	"go/types"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	modulePath  = "github.com/hishel-go/hishel"
	modelPath   = modulePath + "/model"
	runtimePath = modulePath + "/cacheasync"

	// marker is the directive, on a line of its own in a type's doc
	// comment, that makes the type a backend.
	marker = "//hishel:backend"
	// nonBlocking marks a backend whose operations never wait for I/O;
	// its async API runs a call in the caller's goroutine when a slot is
	// free (see cacheasync.GoNow and Runner.TryNow).
	nonBlocking = "//hishel:nonblocking"
	// schemeDirective, followed by a space and a URL scheme, registers the
	// backend for that scheme with cache.Open and cacheasync.Open.
	schemeDirective = "//hishel:scheme"

	cachePath = modulePath + "/cache"
)

// runtimeNames are the exported names of the async runtime (package
// cacheasync), which generated async packages define or import.
var runtimeNames = []string{"DefaultMaxInFlight", "Future", "Go", "GoErr", "GoErrNow", "GoErrUnbounded", "GoNow", "GoSeq", "GoUnbounded", "NewRunner", "Options", "Ready", "ReadyErr", "Result", "Runner", "Stream"}

// openNames are the names that packages cache and cacheasync declare by
// hand for opening stores by URL (open.go), which backends rendered there
// must not take.
var openNames = []string{"Open", "Opener", "Register", "Schemes", "Store"}

// checkOpenNames fails when a name that t's generated packages define is
// one of openNames: for a template rendered into cache or cacheasync.
func checkOpenNames(t *tmpl) error {
	for _, b := range t.backends {
		names := []string{b.name}
		for _, c := range b.ctors {
			names = append(names, c.name)
		}
		for _, a := range b.aliases {
			names = append(names, a.obj.Name())
		}
		for _, n := range names {
			if slices.Contains(openNames, n) {
				return fmt.Errorf("gen: %s.%s: name collides with %s of packages cache and cacheasync (open.go)", t.name, n, n)
			}
		}
	}
	return nil
}

// tmpl is what gen learned from a template package.
type tmpl struct {
	path, name string     // import path and package name of the template
	backends   []*backend // in source order
	errs       []*errVar  // exported Err* variables of package model, in source order
	modelFiles []string   // files of package model declaring errs, sorted
}

// backend is one //hishel:backend type of the template.
type backend struct {
	nonBlocking bool   // operations never wait for I/O
	scheme      string // URL scheme it registers, or ""
	urlCtor     *fn    // the constructor taking (context.Context, *url.URL), when scheme is set
	name        string
	file        string // base name of the file that declares it
	doc         string // doc comment text, directives removed
	ctors       []*fn  // constructors, in source order
	ops         []*fn  // exported methods other than Close, in source order
	closeDoc    string
	aliases     []*alias // template types re-exported in this backend's files
	recv        string   // receiver name of the generated methods
	pkgNames    []string // names of the packages its signatures mention
}

// fn is a constructor or an operation.
type fn struct {
	name     string
	doc      string
	params   []param    // an operation's first parameter is its context
	variadic bool       // the last parameter is variadic
	result   types.Type // T of (T, error) or of iter.Seq2[T, error]; nil for (error) and for constructors
	seq      bool       // the operation returns iter.Seq2[T, error]
}

type param struct {
	name string
	typ  types.Type // for a variadic parameter, its slice type
}

// alias is an exported template type re-exported by a type alias.
type alias struct {
	obj *types.TypeName
	doc string
	// fields is the source of a struct type's declaration with its
	// comments (unexported fields left out), for the alias's doc: go doc
	// shows an alias's comment, not the fields of the type it names.
	fields string
}

// structSource returns the declaration of obj, a struct type of src, as
// source with its field comments, without its unexported fields; "" for
// any other type.
func structSource(src *source, obj *types.TypeName) string {
	for _, f := range src.files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if src.info.Defs[ts.Name] != obj || !ok {
					continue
				}
				exported := *st.Fields
				exported.List = nil
				for _, fld := range st.Fields.List {
					if len(fld.Names) == 0 || fld.Names[0].IsExported() {
						exported.List = append(exported.List, fld)
					}
				}
				var comments []*ast.CommentGroup
				for _, cg := range f.Comments {
					if cg.Pos() >= st.Pos() && cg.End() <= st.End() {
						comments = append(comments, cg)
					}
				}
				var b strings.Builder
				b.WriteString("type " + ts.Name.Name + " ")
				node := &printer.CommentedNode{Node: &ast.StructType{Struct: st.Struct, Fields: &exported}, Comments: comments}
				if err := (&printer.Config{Mode: printer.UseSpaces | printer.TabIndent, Tabwidth: 8}).Fprint(&b, src.fset, node); err != nil {
					return ""
				}
				return b.String()
			}
		}
	}
	return ""
}

// errVar is a sentinel error of package model, re-exported by both APIs.
type errVar struct {
	name, doc string
}

// docs maps the package-level objects of src to their doc comments.
func docs(src *source) map[types.Object]*ast.CommentGroup {
	m := map[types.Object]*ast.CommentGroup{}
	for _, f := range src.files {
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				m[src.info.Defs[d.Name]] = d.Doc
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					var names []*ast.Ident
					var doc *ast.CommentGroup
					switch s := spec.(type) {
					case *ast.TypeSpec:
						names, doc = []*ast.Ident{s.Name}, s.Doc
					case *ast.ValueSpec:
						names, doc = s.Names, s.Doc
					}
					if doc == nil && !d.Lparen.IsValid() {
						doc = d.Doc
					}
					for _, n := range names {
						m[src.info.Defs[n]] = doc
					}
				}
			}
		}
	}
	return m
}

// directiveArg returns the argument of directive d (the text after "d "),
// when doc has a line starting with it; ok is false when none does.
func directiveArg(doc *ast.CommentGroup, d string) (arg string, ok bool) {
	if doc == nil {
		return "", false
	}
	for _, c := range doc.List {
		if rest, found := strings.CutPrefix(c.Text, d); found && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.TrimSpace(rest), true
		}
	}
	return "", false
}

// validScheme reports whether s is a URL scheme in lower case (RFC 3986).
func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// isBackend reports whether doc carries the backend marker.
func isBackend(doc *ast.CommentGroup) bool { return hasDirective(doc, marker) }

// hasDirective reports whether doc has the line d on its own.
func hasDirective(doc *ast.CommentGroup, d string) bool {
	if doc == nil {
		return false
	}
	for _, c := range doc.List {
		if strings.TrimRightFunc(c.Text, unicode.IsSpace) == d {
			return true
		}
	}
	return false
}

// analyze finds the backends of the template src, checks them against the
// template rules, and collects the sentinel errors of package model (mdl;
// nil skips them).
func analyze(src, mdl *source) (*tmpl, error) {
	t := &tmpl{path: src.pkg.Path(), name: src.pkg.Name()}
	doc := docs(src)
	qual := func(name string) string { return t.name + "." + name }
	text := func(obj types.Object) string {
		if cg := doc[obj]; cg != nil {
			return cg.Text()
		}
		return ""
	}

	// Backends: marked types, in source order.
	byObj := map[*types.TypeName]*backend{}
	var objs []*types.TypeName
	for obj, cg := range doc {
		tn, ok := obj.(*types.TypeName)
		if ok && isBackend(cg) {
			objs = append(objs, tn)
		}
	}
	slices.SortFunc(objs, func(a, b *types.TypeName) int { return int(a.Pos() - b.Pos()) })
	for _, obj := range objs {
		switch named, _ := obj.Type().(*types.Named); {
		case !obj.Exported():
			return nil, fmt.Errorf("gen: %s: backend type must be exported", qual(obj.Name()))
		case obj.IsAlias() || named == nil:
			return nil, fmt.Errorf("gen: %s: backend must be a defined struct type, not an alias", qual(obj.Name()))
		case named.TypeParams().Len() > 0:
			return nil, fmt.Errorf("gen: %s: backend type must not be generic", qual(obj.Name()))
		default:
			if _, ok := named.Underlying().(*types.Struct); !ok {
				return nil, fmt.Errorf("gen: %s: backend must be a struct type", qual(obj.Name()))
			}
		}
		scheme, hasScheme := directiveArg(doc[obj], schemeDirective)
		if hasScheme && !validScheme(scheme) {
			return nil, fmt.Errorf("gen: %s: %s %q: want a URL scheme in lower case, such as %s sqlite", qual(obj.Name()), schemeDirective, scheme, schemeDirective)
		}
		for _, other := range t.backends {
			if hasScheme && other.scheme == scheme {
				return nil, fmt.Errorf("gen: %s: scheme %q is already %s's", qual(obj.Name()), scheme, qual(other.name))
			}
		}
		b := &backend{
			scheme:      scheme,
			nonBlocking: hasDirective(doc[obj], nonBlocking),
			name:        obj.Name(),
			file:        filepath.Base(src.fset.Position(obj.Pos()).Filename),
			doc:         text(obj),
		}
		byObj[obj] = b
		t.backends = append(t.backends, b)
	}
	if len(t.backends) == 0 {
		return nil, fmt.Errorf("gen: %s: no backend types: mark an exported struct type with a %q line in its doc comment", t.path, marker)
	}

	// Constructors: exported funcs returning exactly (*X, error).
	scope := src.pkg.Scope()
	var funcs []*types.Func
	for _, name := range scope.Names() {
		if f, ok := scope.Lookup(name).(*types.Func); ok && f.Exported() {
			funcs = append(funcs, f)
		}
	}
	slices.SortFunc(funcs, func(a, b *types.Func) int { return int(a.Pos() - b.Pos()) })
	for _, f := range funcs {
		sig := f.Type().(*types.Signature)
		b := byObj[constructed(sig)]
		if b == nil {
			continue
		}
		switch {
		case sig.TypeParams().Len() > 0:
			return nil, fmt.Errorf("gen: %s: constructor must not be generic", qual(f.Name()))
		case sig.Variadic():
			return nil, fmt.Errorf("gen: %s: constructor must not be variadic", qual(f.Name()))
		}
		c := &fn{name: f.Name(), doc: text(f), params: params(sig)}
		b.ctors = append(b.ctors, c)
		if b.scheme != "" && isURLCtor(sig) {
			if b.urlCtor != nil {
				return nil, fmt.Errorf("gen: %s: %s and %s both take (context.Context, *url.URL); %s needs one", qual(b.name), qual(b.urlCtor.name), qual(f.Name()), schemeDirective)
			}
			b.urlCtor = c
		}
	}

	// Operations: exported methods declared on X or *X.
	for _, obj := range objs {
		b := byObj[obj]
		if len(b.ctors) == 0 {
			return nil, fmt.Errorf("gen: %s: no constructor: want an exported func returning (*%s, error)", qual(b.name), b.name)
		}
		if b.scheme != "" && b.urlCtor == nil {
			return nil, fmt.Errorf("gen: %s: %s %s: no constructor taking (context.Context, *url.URL) to open its URLs", qual(b.name), schemeDirective, b.scheme)
		}
		named := obj.Type().(*types.Named)
		var methods []*types.Func
		for m := range named.Methods() {
			if m.Exported() {
				methods = append(methods, m)
			}
		}
		slices.SortFunc(methods, func(a, b *types.Func) int { return int(a.Pos() - b.Pos()) })
		hasClose := false
		for _, m := range methods {
			where := qual(b.name + "." + m.Name())
			sig := m.Type().(*types.Signature)
			if m.Name() == "Close" {
				if sig.Params().Len() != 0 || sig.Results().Len() != 1 || !isError(sig.Results().At(0).Type()) {
					return nil, fmt.Errorf("gen: %s: Close must be Close() error", where)
				}
				hasClose = true
				b.closeDoc = text(m)
				continue
			}
			if m.Name() == "Template" {
				return nil, fmt.Errorf("gen: %s: name is reserved for the generated accessor of the template store", where)
			}
			op := &fn{name: m.Name(), doc: text(m), params: params(sig), variadic: sig.Variadic()}
			if sig.Params().Len() == 0 || !isContext(sig.Params().At(0).Type()) {
				return nil, fmt.Errorf("gen: %s: first parameter must be context.Context", where)
			}
			switch res := sig.Results(); {
			case res.Len() == 1 && isError(res.At(0).Type()):
			case res.Len() == 2 && isError(res.At(1).Type()) && !isError(res.At(0).Type()):
				op.result = res.At(0).Type()
			case res.Len() == 1 && seqOf(res.At(0).Type()) != nil:
				op.result, op.seq = seqOf(res.At(0).Type()), true
			default:
				return nil, fmt.Errorf("gen: %s: results must be (error), (T, error) or iter.Seq2[T, error]", where)
			}
			b.ops = append(b.ops, op)
		}
		if !hasClose {
			return nil, fmt.Errorf("gen: %s: missing method Close() error", qual(b.name))
		}
	}

	// Template types in signatures: re-exported by the first backend that
	// mentions them; unexported or generic ones cannot be.
	seen := map[*types.TypeName]bool{}
	for _, b := range t.backends {
		pkgs := map[string]bool{}
		for _, f := range slices.Concat(b.ctors, b.ops) {
			var types_ []types.Type
			for _, p := range f.params {
				types_ = append(types_, p.typ)
			}
			if f.result != nil {
				types_ = append(types_, f.result)
			}
			for _, typ := range types_ {
				var err error
				walkNames(typ, func(obj *types.TypeName, generic bool) {
					if err != nil || obj.Pkg() == nil {
						return
					}
					pkgs[obj.Pkg().Name()] = true
					if obj.Pkg() != src.pkg {
						return
					}
					if _, ok := byObj[obj]; ok {
						return
					}
					where := qual(b.name + "." + f.name)
					if slices.Contains(b.ctors, f) {
						where = qual(f.name)
					}
					switch {
					case !obj.Exported():
						err = fmt.Errorf("gen: %s: uses unexported type %s, which the generated packages cannot name", where, qual(obj.Name()))
					case generic:
						err = fmt.Errorf("gen: %s: uses generic type %s, which gen cannot re-export", where, qual(obj.Name()))
					case !seen[obj]:
						seen[obj] = true
						b.aliases = append(b.aliases, &alias{obj: obj, doc: text(obj), fields: structSource(src, obj)})
					}
				})
				if err != nil {
					return nil, err
				}
			}
		}
		slices.SortFunc(b.aliases, func(x, y *alias) int { return int(x.obj.Pos() - y.obj.Pos()) })
		for name := range pkgs {
			b.pkgNames = append(b.pkgNames, name)
		}
		slices.Sort(b.pkgNames)
	}

	if mdl != nil {
		t.errs, t.modelFiles = modelErrors(mdl)
	}

	// Names the generated packages define must not collide.
	defined := map[string]string{}
	for _, name := range runtimeNames {
		defined[name] = "the async runtime's " + name
	}
	defined["Template"] = "the generated accessor Template"
	for _, e := range t.errs {
		defined[e.name] = "the re-exported model." + e.name
	}
	define := func(name string) error {
		if what, ok := defined[name]; ok {
			return fmt.Errorf("gen: %s: name collides with %s in the generated packages", qual(name), what)
		}
		defined[name] = qual(name)
		return nil
	}
	for _, b := range t.backends {
		if err := define(b.name); err != nil {
			return nil, err
		}
		for _, c := range b.ctors {
			if err := define(c.name); err != nil {
				return nil, err
			}
		}
		for _, a := range b.aliases {
			if err := define(a.obj.Name()); err != nil {
				return nil, err
			}
		}
	}

	for _, b := range t.backends {
		b.nameParams(t.name)
	}
	return t, nil
}

// constructed returns X when sig's results are exactly (*X, error) with X
// a defined type, and nil otherwise.
func constructed(sig *types.Signature) *types.TypeName {
	res := sig.Results()
	if res.Len() != 2 || !isError(res.At(1).Type()) {
		return nil
	}
	ptr, ok := types.Unalias(res.At(0).Type()).(*types.Pointer)
	if !ok {
		return nil
	}
	named, ok := types.Unalias(ptr.Elem()).(*types.Named)
	if !ok {
		return nil
	}
	return named.Obj()
}

// seqOf returns T when t is iter.Seq2[T, error] (T not error), and nil
// otherwise.
func seqOf(t types.Type) types.Type {
	named, ok := types.Unalias(t).(*types.Named)
	if !ok || named.Obj().Pkg() == nil || named.Obj().Pkg().Path() != "iter" || named.Obj().Name() != "Seq2" {
		return nil
	}
	args := named.TypeArgs()
	if args.Len() != 2 || !isError(args.At(1)) || isError(args.At(0)) {
		return nil
	}
	return args.At(0)
}

func isError(t types.Type) bool {
	return types.Identical(t, types.Universe.Lookup("error").Type())
}

// isURLCtor reports whether sig's parameters are (context.Context, *url.URL).
func isURLCtor(sig *types.Signature) bool {
	ps := sig.Params()
	if ps.Len() != 2 || !isContext(ps.At(0).Type()) {
		return false
	}
	ptr, ok := types.Unalias(ps.At(1).Type()).(*types.Pointer)
	if !ok {
		return false
	}
	named, ok := types.Unalias(ptr.Elem()).(*types.Named)
	return ok && named.Obj().Pkg() != nil && named.Obj().Pkg().Path() == "net/url" && named.Obj().Name() == "URL"
}

func isContext(t types.Type) bool {
	named, ok := types.Unalias(t).(*types.Named)
	return ok && named.Obj().Pkg() != nil && named.Obj().Pkg().Path() == "context" && named.Obj().Name() == "Context"
}

// params returns the parameters of sig, with their template names.
func params(sig *types.Signature) []param {
	var ps []param
	for v := range sig.Params().Variables() {
		ps = append(ps, param{name: v.Name(), typ: v.Type()})
	}
	return ps
}

// walkNames calls f for every type name that t mentions, outside the
// underlying types of defined types; generic reports an instantiation.
func walkNames(t types.Type, f func(obj *types.TypeName, generic bool)) {
	switch t := t.(type) {
	case *types.Named:
		f(t.Obj(), t.TypeArgs().Len() > 0)
		for a := range t.TypeArgs().Types() {
			walkNames(a, f)
		}
	case *types.Alias:
		f(t.Obj(), t.TypeArgs().Len() > 0)
		for a := range t.TypeArgs().Types() {
			walkNames(a, f)
		}
	case *types.Pointer:
		walkNames(t.Elem(), f)
	case *types.Slice:
		walkNames(t.Elem(), f)
	case *types.Array:
		walkNames(t.Elem(), f)
	case *types.Map:
		walkNames(t.Key(), f)
		walkNames(t.Elem(), f)
	case *types.Chan:
		walkNames(t.Elem(), f)
	case *types.Signature:
		for v := range t.Params().Variables() {
			walkNames(v.Type(), f)
		}
		for v := range t.Results().Variables() {
			walkNames(v.Type(), f)
		}
	case *types.Struct:
		for v := range t.Fields() {
			walkNames(v.Type(), f)
		}
	case *types.Interface:
		for m := range t.ExplicitMethods() {
			walkNames(m.Type(), f)
		}
		for e := range t.EmbeddedTypes() {
			walkNames(e, f)
		}
	case *types.Union:
		for term := range t.Terms() {
			walkNames(term.Type(), f)
		}
	}
}

// nameParams chooses the receiver name of b's generated methods and gives
// every parameter a name that is valid and free in the generated code: an
// operation's context is ctx; unnamed and blank parameters become argN; a
// name that would shadow a package, a predeclared identifier, the receiver
// or a generated local gets a number appended.
func (b *backend) nameParams(tmplName string) {
	taken := map[string]bool{tmplName: true, "context": true, "cacheasync": true}
	for _, n := range b.pkgNames {
		taken[n] = true
	}
	used := map[string]bool{}
	for _, f := range slices.Concat(b.ctors, b.ops) {
		for _, p := range f.params {
			used[p.name] = true
		}
	}
	r, _ := utf8.DecodeRuneInString(b.name)
	for _, cand := range []string{string(unicode.ToLower(r)), "x", "st", "store", "recv"} {
		if !taken[cand] && !used[cand] && types.Universe.Lookup(cand) == nil && cand != "s" && cand != "r" {
			b.recv = cand
			break
		}
	}
	if b.recv == "" {
		b.recv = "recv"
	}
	// Names the generated bodies use besides the parameters.
	for _, f := range b.ctors {
		renameParams(f.params, 0, taken, map[string]bool{"s": true, "err": true, "async": true})
	}
	for _, f := range b.ops {
		f.params[0].name = "ctx"
		renameParams(f.params, 1, taken, map[string]bool{"ctx": true, b.recv: true})
	}
}

// renameParams renames ps[from:] as nameParams describes.
func renameParams(ps []param, from int, taken, locals map[string]bool) {
	used := map[string]bool{}
	free := func(n string) bool {
		return !taken[n] && !locals[n] && !used[n] && types.Universe.Lookup(n) == nil && token.Lookup(n) == token.IDENT
	}
	for i := from; i < len(ps); i++ {
		base := ps[i].name
		if base == "" || base == "_" {
			base = "arg" + strconv.Itoa(i)
		}
		name := base
		for n := 1; !free(name); n++ {
			name = base + strconv.Itoa(n)
		}
		ps[i].name = name
		used[name] = true
	}
}

// modelErrors returns the exported Err* variables of error type in package
// model, in source order, and the files declaring them.
func modelErrors(mdl *source) ([]*errVar, []string) {
	doc := docs(mdl)
	var objs []*types.Var
	for _, name := range mdl.pkg.Scope().Names() {
		v, ok := mdl.pkg.Scope().Lookup(name).(*types.Var)
		if ok && v.Exported() && strings.HasPrefix(name, "Err") && isError(v.Type()) {
			objs = append(objs, v)
		}
	}
	slices.SortFunc(objs, func(a, b *types.Var) int { return int(a.Pos() - b.Pos()) })
	var errs []*errVar
	var files []string
	for _, v := range objs {
		text := ""
		if cg := doc[v]; cg != nil {
			text = cg.Text()
		}
		errs = append(errs, &errVar{name: v.Name(), doc: text})
		file := filepath.Base(mdl.fset.Position(v.Pos()).Filename)
		if !slices.Contains(files, file) {
			files = append(files, file)
		}
	}
	slices.Sort(files)
	return errs, files
}
