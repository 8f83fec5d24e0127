// Package memstat reads the process's memory as the kernel counts it, for
// benchmarks that bound a streaming path's memory: the anonymous resident
// memory (heap, stacks, runtime), which a memory-mapped database file and
// the page cache do not count in.
package memstat

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"sync"
	"time"
)

// Anon returns the process's anonymous resident memory in bytes (RssAnon
// in /proc/self/status), or -1 where the system does not say.
func Anon() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("RssAnon:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

// Peak starts sampling Anon every 5 ms in a goroutine of its own and
// returns the function that stops it (the goroutine has ended when it
// returns) and returns the peak above the value Anon had when Peak was
// called. It may be called more than once: later calls return the same.
func Peak() func() int64 {
	base := Anon()
	peak := base
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				peak = max(peak, Anon())
			}
		}
	}()
	var once sync.Once
	var grown int64
	return func() int64 {
		once.Do(func() {
			close(stop)
			<-done
			grown = max(peak, Anon()) - base
		})
		return grown
	}
}
