// A pure Go victim (no cgo: no libc in the process) for attach_go. Rounds
// on stdin lines: "round" runs one, "quit" ends the process. A round:
// GOROUTINES goroutines, half of them locked to OS threads of their own,
// each makes CALLS calls of probed() from deep recursion that grows (and,
// across rounds, copies) its goroutine stack, and one getppid() and one
// open("/dev/null") per call. It prints
//
//	round K calls=N sum=S moved=M tids=T1:C1,T2:C2,...
//
// sum: the sum of every argument passed to probed (what a uprobe reading
// Go's argument registers must also find); moved: goroutines whose stack
// was copied elsewhere during the round; tids: the locked goroutines'
// threads and their call counts.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

var sink int64

// Nine integer arguments: Go's internal ABI passes them in RAX, RBX, RCX,
// RDI, RSI, R8, R9, R10 and R11. nosplit: no stack-growth prologue, which
// would run the first instruction (and a probe on it) again after growing
// the stack (as under the kernel's uprobes).
//
//go:noinline
//go:nosplit
func probed(a, b, c, d, e, f, g, h, i int64) int64 {
	s := a + b + c + d + e + f + g + h + i
	atomic.AddInt64(&sink, s)
	return s
}

// deep recurses n frames of 1 KiB each before calling probed: a fresh
// goroutine's 8 KiB stack must be copied to a bigger one on the way down.
//
//go:noinline
func deep(n int, x int64) int64 {
	var pad [128]int64
	pad[n%128] = x
	if n > 0 {
		return deep(n-1, x) + pad[n%128] - x
	}
	return probed(x, x+1, x+2, x+3, x+4, x+5, x+6, x+7, x+8)
}

func stackAddr(v *int) uintptr { return uintptr(unsafe.Pointer(v)) }

type result struct {
	tid, calls int
	sum        int64
	moved      bool
}

// worker makes its calls once every goroutine is ready (start closed), so
// that a locked goroutine's thread makes no call but its own.
func worker(g, calls int, lock bool, out *result, ready, wg *sync.WaitGroup, start chan struct{}) {
	defer wg.Done()
	if lock {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		out.tid = syscall.Gettid()
	}
	ready.Done()
	<-start
	var here int
	base := stackAddr(&here)
	for i := 0; i < calls; i++ {
		x := int64(g*1000003 + i)
		out.sum += deep(8+i%48, x)
		syscall.Getppid()
		if fd, err := syscall.Open("/dev/null", syscall.O_RDONLY, 0); err == nil {
			syscall.Close(fd)
		}
		out.calls++
	}
	out.moved = stackAddr(&here) != base
}

func round(k, goroutines, calls int) string {
	res := make([]result, goroutines)
	var wg, ready sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		ready.Add(1)
		go worker(g, calls, g%2 == 0, &res[g], &ready, &wg, start)
	}
	ready.Wait()
	close(start)
	wg.Wait()
	var n, moved int
	var sum int64
	var tids []string
	for _, r := range res {
		n += r.calls
		sum += r.sum
		if r.moved {
			moved++
		}
		if r.tid != 0 {
			tids = append(tids, fmt.Sprintf("%d:%d", r.tid, r.calls))
		}
	}
	return fmt.Sprintf("round %d calls=%d sum=%d moved=%d tids=%s", k, n, sum, moved, strings.Join(tids, ","))
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: go-victim GOROUTINES CALLS [once]")
		os.Exit(2)
	}
	goroutines, _ := strconv.Atoi(os.Args[1])
	calls, _ := strconv.Atoi(os.Args[2])
	runtime.GOMAXPROCS(8)
	if len(os.Args) > 3 && os.Args[3] == "once" {
		fmt.Println(round(1, goroutines, calls))
		return
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for k := 1; in.Scan() && in.Text() == "round"; k++ {
		fmt.Println(round(k, goroutines, calls))
	}
}
