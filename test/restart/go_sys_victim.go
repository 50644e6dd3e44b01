// A pure Go victim (no cgo) for restart_reinjectgo: GOROUTINES goroutines
// call getppid() and probed() in a loop and count their own calls (one
// count for both: each iteration makes one of each). Commands on stdin
// lines, each answered by one line:
//
//	go      the goroutines start (again)             -> "going"
//	report  they stop, all of them returned          -> "report calls=N" (every call since the start)
//	quit    the process ends
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var calls, stop, sink int64

// probed is the uprobe's function. nosplit: no stack-growth prologue,
// whose restart would run a probe on its first instruction twice.
//
//go:noinline
//go:nosplit
func probed(x int64) int64 {
	return 2*x + 1
}

// worker calls getppid() and probed() until told to stop, resting 1 ms
// every 16 calls (Go's timers and scheduler make their own syscalls
// meanwhile).
func worker(wg *sync.WaitGroup) {
	defer wg.Done()
	var s int64
	defer func() { atomic.AddInt64(&sink, s) }()
	for i := 1; atomic.LoadInt64(&stop) == 0; i++ {
		if syscall.Getppid() <= 0 {
			fmt.Fprintln(os.Stderr, "getppid() failed")
			os.Exit(1)
		}
		s += probed(int64(i))
		atomic.AddInt64(&calls, 1)
		if i%16 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go-sys-victim GOROUTINES")
		os.Exit(2)
	}
	n, _ := strconv.Atoi(os.Args[1])
	var wg sync.WaitGroup
	running := false
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "go":
			if !running {
				atomic.StoreInt64(&stop, 0)
				for g := 0; g < n; g++ {
					wg.Add(1)
					go worker(&wg)
				}
				running = true
			}
			fmt.Println("going")
		case "report":
			atomic.StoreInt64(&stop, 1)
			wg.Wait()
			running = false
			fmt.Printf("report calls=%d\n", atomic.LoadInt64(&calls))
		case "quit":
			return
		}
	}
}
