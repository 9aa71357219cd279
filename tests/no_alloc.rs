//! The hot path allocates nothing: publish, loan/commit, try_recv, recv
//! (spin), try_recv_with and zero-copy receive, in both modes, on a heap ring
//! and on a shared-memory ring. A counting global allocator records every
//! allocation the test thread makes while armed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use ringbus::ring::{Consumer, Mode, Producer, RingConfig, RingRegion, Start};
use ringbus::wait::WaitStrategy;

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread's locals may be gone while it exits.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards to the system allocator; the bookkeeping touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|n| n.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    ALLOCS.with(|n| n.get())
}

fn exercise(region: Arc<RingRegion>, mode: Mode) {
    let mut producer = Producer::new(region.clone()).unwrap();
    let mut consumer = Consumer::new(region, Start::Earliest).unwrap();
    let msg = [7u8; 64];
    let mut buf = [0u8; 64];
    let n = allocations(|| {
        for i in 0..10_000u64 {
            let seq = producer.publish(&msg, i).unwrap();
            let info = consumer.try_recv(&mut buf).unwrap();
            assert_eq!((info.seq, info.tag), (seq, i));

            let mut loan = producer.loan(64).unwrap();
            loan[..8].copy_from_slice(&i.to_le_bytes());
            loan.commit(i);
            consumer.recv(&mut buf, WaitStrategy::Spin).unwrap();

            producer.try_publish(&msg, i).unwrap();
            let len = consumer.try_recv_with(|bytes, _| bytes.len()).unwrap();
            assert_eq!(len, 64);

            if mode == Mode::Backpressure {
                producer.publish(&msg, i).unwrap();
                let view = consumer.try_recv_ref().unwrap();
                assert_eq!(view.len(), 64);
            }
        }
    });
    assert_eq!(n, 0, "{mode} ring: {n} heap allocations on the hot path");
}

fn config(mode: Mode) -> RingConfig {
    RingConfig {
        max_message_size: 64,
        capacity: 64,
        mode,
        max_subscribers: 4,
    }
}

#[test]
fn publish_and_receive_never_allocate() {
    for mode in [Mode::Overwrite, Mode::Backpressure] {
        exercise(RingRegion::heap(&config(mode)).unwrap(), mode);

        let (data, ctrl) =
            ringbus::shm::create_ring_memfd("no-alloc", &config(mode), 1, std::process::id())
                .unwrap();
        let region =
            ringbus::shm::map_ring(&data, &ctrl, ringbus::shm::Access::ReadWrite, None).unwrap();
        exercise(region, mode);
    }
}

#[test]
fn the_counter_counts() {
    let n = allocations(|| {
        std::hint::black_box(vec![1u8; 100]);
    });
    assert_eq!(n, 1);
}
