//! The hot path allocates nothing: publish, loan/commit, try_recv,
//! try_recv_with, zero-copy receive and blocking receive, counted by a
//! global allocator.

use ringbus::ring::{Consumer, Mode, Producer, RingRegion, Start, TopicConfig};
use ringbus::wait::WaitStrategy;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Per thread: the test harness's own threads may allocate meanwhile.
    // A const-initialised Cell needs no allocation and no destructor, so it
    // is safe to touch from inside the allocator.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn publish_and_receive_do_not_allocate() {
    for mode in [Mode::Overwrite, Mode::Backpressure] {
        let cfg = TopicConfig {
            max_message_size: 64,
            capacity: 64,
            mode,
            max_subscribers: 4,
        };
        let region = RingRegion::heap(&cfg).unwrap();
        let mut p = Producer::new(region.clone()).unwrap();
        let mut c = Consumer::new(region, Start::Latest).unwrap();
        let msg = [1u8; 64];
        let mut buf = [0u8; 64];
        // The producer takes the consumer's port (and answers its request
        // for the latest slot) after its first message: a one-time change,
        // not the hot path.
        p.publish(&msg, 0).unwrap();
        c.try_recv(&mut buf).unwrap();
        p.publish(&msg, 0).unwrap();
        c.try_recv(&mut buf).unwrap();
        let before = allocs();
        let mut sum = 0usize;
        for i in 0..10_000u64 {
            p.publish(&msg, i).unwrap();
            let mut l = p.loan(32).unwrap();
            l.fill(2);
            l.commit(i);
            sum += c.try_recv(&mut buf).unwrap().len;
            if mode == Mode::Backpressure {
                sum += c.try_recv_ref().unwrap().len();
            } else {
                sum += c.try_recv_with(|m, _| m.len()).unwrap();
            }
            p.publish(&msg, i).unwrap();
            sum += c.recv(&mut buf, WaitStrategy::Spin).unwrap().len;
        }
        let after = allocs();
        assert_eq!(sum, 10_000 * (64 + 32 + 64));
        assert_eq!(
            after - before,
            0,
            "{mode}: the hot path allocated {} times",
            after - before
        );
    }
}
