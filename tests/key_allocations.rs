//! Deriving a key allocates nothing for arguments made of integers, strings and small
//! structs: a counting global allocator proves it. (Maps allocate: their entries are
//! sorted.)

use idempotency::key::NamespaceKey;
use idempotency::KeyHasher;
use serde::Serialize;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator, only counting this thread's allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (out, ALLOCATIONS.with(Cell::get) - before)
}

#[derive(Serialize)]
struct Address {
    street: String,
    zip: u32,
    country: &'static str,
}

#[derive(Serialize)]
enum Priority {
    Express { days: u8 },
}

#[test]
fn deriving_a_key_from_integers_strings_and_small_structs_allocates_nothing() {
    let sku = String::from("B-7");
    let address = Address {
        street: "1 Rue de la Paix".into(),
        zip: 75002,
        country: "FR",
    };
    let lines = [(String::from("B-7"), 2u32), (String::from("C-9"), 1)];
    let (key, allocations) = allocations_during(|| {
        let mut hasher = KeyHasher::new("orders.create");
        hasher
            .arg("address", &address)
            .arg("customer", &42u64)
            .arg("lines", &lines)
            .arg("note", &Some("leave at the door"))
            .arg("priority", &Priority::Express { days: 2 })
            .arg("qty", &3u32)
            .arg("sku", &sku);
        hasher.finish()
    });
    key.unwrap();
    assert_eq!(allocations, 0);

    // The process-local keys of the embedded store, likewise.
    let namespace = NamespaceKey::new("orders.create");
    let (key, allocations) = allocations_during(|| {
        let mut hasher = KeyHasher::local(&namespace);
        hasher
            .arg("address", &address)
            .arg("customer", &42u64)
            .arg("sku", &sku);
        hasher.finish()
    });
    key.unwrap();
    assert_eq!(allocations, 0);
}

#[test]
fn keys_longer_than_the_inline_buffer_match_the_specified_hash() {
    // Past its inline buffer the hasher streams; the key must not change. Golden values
    // from Python's `blake3` over the documented encoding (see `tests/keys.rs`).
    for (len, golden) in [
        (150, "8ff9917168468261da5d10393882df0d"),
        (10_000, "b1828cd152ec220e1b5a9e8fbcea86d7"),
    ] {
        let mut hasher = KeyHasher::new("long");
        hasher.arg("text", &"x".repeat(len));
        assert_eq!(hasher.finish().unwrap().to_string(), golden, "{len} bytes");
    }
}
