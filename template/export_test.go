package template

// CorruptChild runs the child process of TestBoltCorruptFiles when this
// test binary was started as one (see corrupt_test.go, on Unix), and
// returns its exit code; ok is false in every other run. TestMain (in
// package template_test) calls it first.
var CorruptChild = func() (code int, ok bool) { return 0, false }
