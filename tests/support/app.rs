//! What the behaviour tests share: an application error type, stores that count or hide
//! the fast path, gates, and helpers to drive a store's steps directly.

use idempotency::store::{Begin, Claim, Fingerprint, InProcess, Request};
use idempotency::{KeyHasher, MemoryStore, Store, StoreError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// An application's error type, as the attribute requires: it can carry the
/// idempotency layer's errors.
#[derive(Debug)]
pub enum AppError {
    Idempotency(idempotency::Error),
    Body(&'static str),
}

impl From<idempotency::Error> for AppError {
    fn from(err: idempotency::Error) -> Self {
        AppError::Idempotency(err)
    }
}

impl AppError {
    pub fn idempotency(self) -> idempotency::Error {
        match self {
            AppError::Idempotency(err) => err,
            AppError::Body(msg) => panic!("expected an idempotency error, got the body's {msg:?}"),
        }
    }
}

/// A store (by default a [`MemoryStore`]) that counts what callers do and signals when
/// they find a record in progress, so tests synchronise on real events instead of
/// sleeping.
#[derive(Default)]
pub struct Probe<S = MemoryStore> {
    pub inner: S,
    begins: AtomicUsize,
    claims: AtomicUsize,
    busy: AtomicUsize,
    completes: AtomicUsize,
    releases: AtomicUsize,
    changed: Notify,
    keys: Mutex<Vec<Request>>,
}

impl<S> Probe<S> {
    pub fn new(inner: S) -> Self {
        Probe {
            inner,
            begins: AtomicUsize::default(),
            claims: AtomicUsize::default(),
            busy: AtomicUsize::default(),
            completes: AtomicUsize::default(),
            releases: AtomicUsize::default(),
            changed: Notify::new(),
            keys: Mutex::default(),
        }
    }

    pub fn begins(&self) -> usize {
        self.begins.load(Ordering::SeqCst)
    }
    pub fn claims(&self) -> usize {
        self.claims.load(Ordering::SeqCst)
    }
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }
    pub fn completes(&self) -> usize {
        self.completes.load(Ordering::SeqCst)
    }
    pub fn releases(&self) -> usize {
        self.releases.load(Ordering::SeqCst)
    }
    /// Every request seen, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.keys.lock().unwrap().clone()
    }

    /// Resolves once at least `n` callers have been told the record is in progress.
    pub async fn until_busy(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            if self.busy() >= n {
                return;
            }
            changed.await;
        }
    }
}

impl<S: Store> Store for Probe<S> {
    async fn begin(&self, request: &Request) -> Result<Begin, StoreError> {
        self.begins.fetch_add(1, Ordering::SeqCst);
        self.keys.lock().unwrap().push(request.clone());
        let begin = self.inner.begin(request).await?;
        match &begin {
            Begin::Claimed(_) => self.claims.fetch_add(1, Ordering::SeqCst),
            Begin::InProgress(_) => self.busy.fetch_add(1, Ordering::SeqCst),
            Begin::Completed(_) => 0,
        };
        self.changed.notify_waiters();
        Ok(begin)
    }
    async fn renew(&self, claim: &Claim) -> Result<(), StoreError> {
        self.inner.renew(claim).await
    }
    async fn complete(&self, claim: &Claim, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.completes.fetch_add(1, Ordering::SeqCst);
        self.inner.complete(claim, value, ttl).await
    }
    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.inner.release(claim).await
    }
    fn abandon(&self, claim: Claim) {
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.inner.abandon(claim);
    }
}

/// A probe of a store with the in-process fast path keeps it, as any wrapper can: the
/// behaviour tests then run the path users get. Replays of kept values skip `begin`.
impl<S: InProcess> InProcess for Probe<S> {
    fn memory(&self) -> Option<&MemoryStore> {
        self.inner.memory()
    }
}

/// A store without the in-process fast path, around one that has it: stable keys, and a
/// decode on every replay, as with a store in another process.
#[derive(Default)]
pub struct Plain<S = MemoryStore>(pub S);

impl<S> std::ops::Deref for Plain<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.0
    }
}

impl<S: Store> Store for Plain<S> {
    async fn begin(&self, request: &Request) -> Result<Begin, StoreError> {
        self.0.begin(request).await
    }
    async fn renew(&self, claim: &Claim) -> Result<(), StoreError> {
        self.0.renew(claim).await
    }
    async fn complete(&self, claim: &Claim, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.0.complete(claim, value, ttl).await
    }
    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        self.0.release(claim).await
    }
    fn abandon(&self, claim: Claim) {
        self.0.abandon(claim);
    }
}

/// A one-shot gate a body waits on until the test opens it.
#[derive(Default)]
pub struct Gate {
    open: std::sync::atomic::AtomicBool,
    notify: Notify,
}

impl Gate {
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
    pub async fn wait(&self) {
        loop {
            let opened = self.notify.notified();
            if self.open.load(Ordering::SeqCst) {
                return;
            }
            opened.await;
        }
    }
}

/// Starts `threads` threads, each with a Tokio runtime of its own (current-thread and
/// multi-thread in turn); once all are up, each spawns `calls` tasks of `call` at once.
/// Returns every result.
pub fn on_many_runtimes<T, F, Fut>(threads: usize, calls: usize, call: F) -> Vec<T>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let start = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (start, call) = (std::sync::Arc::clone(&start), call.clone());
            std::thread::spawn(move || {
                let runtime = if i % 2 == 0 {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                } else {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                }
                .unwrap();
                start.wait();
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..calls).map(|_| tokio::spawn(call())).collect();
                    let mut results = Vec::new();
                    for task in tasks {
                        results.push(task.await.unwrap());
                    }
                    results
                })
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

/// A request for record `i` of `label`, keyed as a function of that namespace would be,
/// for tests that drive a store's steps directly.
pub fn request(namespace: &'static str, label: &str, i: u64) -> Request {
    let mut key = KeyHasher::new(namespace);
    key.arg("label", label).arg("i", &i);
    Request {
        namespace: namespace.into(),
        key: key.finish().unwrap(),
        fingerprint: Fingerprint::NONE,
        lease: None,
    }
}

/// Claims the vacant record of `request` and completes it with `value`, kept for `ttl`.
pub async fn write(store: &impl Store, request: &Request, value: &[u8], ttl: Duration) {
    match store.begin(request).await.unwrap() {
        Begin::Claimed(claim) => store.complete(&claim, value, ttl).await.unwrap(),
        other => panic!("a fresh key must be claimed, got {other:?}"),
    }
}

/// An error's message followed by those of its causes, as `anyhow`'s `{:#}` prints it:
/// each layer says its own part once, and the cause carries the detail.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
