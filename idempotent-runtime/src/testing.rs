//! For an application's own tests (feature `testing`): run its `#[idempotent]` functions
//! with idempotency off, or each test on a throwaway store, without touching them.
//!
//! Enable the feature in `[dev-dependencies]` only, so that it is compiled into test
//! builds and never into the release build:
//!
//! ```toml
//! [dev-dependencies]
//! idempotency = { version = "0.1", features = ["testing"] }
//! ```
//!
//! Inside [`scope`] every annotated call made by that task follows the [`Mode`], whatever
//! its `store = ..`: the mode travels with the future, so tests running at once each keep
//! their own. For calls made on other tasks (a server the test spawned, whose requests run
//! on tasks of their own), [`set_process_mode`] sets a mode for the whole process.
//!
//! ```
//! use idempotency::{idempotent, testing};
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! static SENT: AtomicU32 = AtomicU32::new(0);
//!
//! # #[derive(Debug)] struct AppError;
//! # impl From<idempotency::Error> for AppError { fn from(_: idempotency::Error) -> Self { AppError } }
//! #[idempotent(key = id)]
//! async fn send_welcome(id: String) -> Result<u32, AppError> {
//!     Ok(SENT.fetch_add(1, Ordering::SeqCst) + 1)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // A test of the body itself: every call runs it.
//! testing::scope(testing::Mode::Off, async {
//!     send_welcome("u-1".into()).await.unwrap();
//!     send_welcome("u-1".into()).await.unwrap();
//! })
//! .await;
//! assert_eq!(SENT.load(Ordering::SeqCst), 2);
//!
//! // A test of the deduplication, on a store no other test sees.
//! testing::scope(testing::Mode::Isolated, async {
//!     assert_eq!(send_welcome("u-1".into()).await.unwrap(), 3);
//!     assert_eq!(send_welcome("u-1".into()).await.unwrap(), 3);
//! })
//! .await;
//! # }
//! ```

use crate::memory::MemoryStore;
use parking_lot::RwLock;
use std::future::Future;

/// How annotated calls run under [`scope`] or [`set_process_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// The body runs on every call, as if it had no attribute: nothing is stored,
    /// nothing replayed, no store is asked.
    Off,
    /// Calls run on a fresh, empty [`MemoryStore`] of the scope's own (one for the whole
    /// process with [`set_process_mode`]), never on the configured store.
    Isolated,
}

/// What a call in this task (or process) runs on instead of its store.
#[derive(Clone)]
pub(crate) enum Override {
    Off,
    Store(MemoryStore),
}

impl Override {
    fn of(mode: Mode) -> Self {
        match mode {
            Mode::Off => Override::Off,
            Mode::Isolated => Override::Store(MemoryStore::new()),
        }
    }
}

tokio::task_local! {
    static SCOPED: Override;
}

static PROCESS: RwLock<Option<Override>> = RwLock::new(None);

/// Runs `test` with every annotated call it makes in `mode`.
pub async fn scope<F: Future>(mode: Mode, test: F) -> F::Output {
    SCOPED.scope(Override::of(mode), test).await
}

/// Sets `mode` for every annotated call of the process that is not inside a [`scope`]
/// (`None`: back to the configured stores). Meant for a test binary whose tests all want
/// the same mode, such as one that drives a server it spawned.
pub fn set_process_mode(mode: Option<Mode>) {
    *PROCESS.write() = mode.map(Override::of);
}

/// The override for a call made now, if any.
pub(crate) fn current() -> Option<Override> {
    SCOPED
        .try_with(Clone::clone)
        .ok()
        .or_else(|| PROCESS.read().clone())
}

/// Whether a mode is set for a call made now.
pub(crate) fn active() -> bool {
    SCOPED.try_with(|_| ()).is_ok() || PROCESS.read().is_some()
}
