// A Rust victim (rustc -O, std threads) for attach_go, with the protocol
// of go_victim.go: "round" on stdin runs one round, "quit" (or EOF) ends
// the process; argv: THREADS CALLS [once]. A round: THREADS new threads,
// each makes CALLS calls of probed(x, x + 1), one getppid() and one
// open("/dev/null") per call, and prints
//
//     round K calls=N sum=S moved=0 tids=T1:C1,T2:C2,...
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};

static SINK: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn gettid() -> i32;
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn probed(a: u64, b: u64) -> u64 {
    SINK.fetch_add(a + b, Ordering::Relaxed);
    a + b
}

fn worker(t: u64, calls: u64) -> (i32, u64, u64) {
    let tid = unsafe { gettid() };
    let mut sum = 0;
    for i in 0..calls {
        let x = t * 1_000_003 + i;
        sum += probed(x, x + 1);
        let _ = std::os::unix::process::parent_id();
        drop(std::fs::File::open("/dev/null"));
    }
    (tid, calls, sum)
}

fn round(k: u64, threads: u64, calls: u64) -> String {
    let handles: Vec<_> = (0..threads).map(|t| std::thread::spawn(move || worker(t, calls))).collect();
    let (mut n, mut sum, mut tids) = (0, 0, Vec::new());
    for h in handles {
        let (tid, c, s) = h.join().expect("worker");
        n += c;
        sum += s;
        tids.push(format!("{}:{}", tid, c));
    }
    format!("round {} calls={} sum={} moved=0 tids={}", k, n, sum, tids.join(","))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: rust-victim THREADS CALLS [once]");
        std::process::exit(2);
    }
    let threads: u64 = args[1].parse().expect("THREADS");
    let calls: u64 = args[2].parse().expect("CALLS");
    if args.get(3).map(|s| s.as_str()) == Some("once") {
        println!("{}", round(1, threads, calls));
        return;
    }
    println!("ready");
    let stdin = std::io::stdin();
    let mut k = 1;
    for line in stdin.lock().lines() {
        if line.map(|l| l != "round").unwrap_or(true) {
            break;
        }
        println!("{}", round(k, threads, calls));
        k += 1;
    }
}
