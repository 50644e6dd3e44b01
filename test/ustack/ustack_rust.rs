// A Rust victim for attach_ustack: prints "ready", then calls rust_leaf
// through a function, a method and a generic function until a line
// arrives on stdin. Built twice, with legacy and with v0 symbol mangling, so the
// symbolized frames show both demangled.
use std::hint::black_box;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

#[no_mangle]
#[inline(never)]
pub extern "C" fn rust_leaf(x: u64) -> u64 {
    black_box(x) + 1
}

#[inline(never)]
fn inner<T: Into<u64>>(x: T) -> u64 {
    black_box(rust_leaf(x.into())) + 1
}

struct Walker;

impl Walker {
    #[inline(never)]
    fn step(&self, x: u32) -> u64 {
        black_box(inner(x)) + 1
    }
}

#[inline(never)]
fn outer(x: u32) -> u64 {
    black_box(Walker.step(x)) + 1
}

fn main() {
    std::thread::spawn(|| {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        STOP.store(true, Ordering::Relaxed);
    });
    println!("ready");
    let mut sum = 0u64;
    let mut i = 0u32;
    while !STOP.load(Ordering::Relaxed) {
        sum = sum.wrapping_add(outer(black_box(i)));
        i = i.wrapping_add(1);
    }
    println!("{}", sum);
}
