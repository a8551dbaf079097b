//! [`RunToCompletionLayer`]: a handler runs to its end even if its client goes away.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Runs each request of the inner service in a task of its own, so that a client that
/// disconnects (which drops the request's future) does not cut its handler in half: an
/// `#[idempotent]` handler then completes its record, and the client's retry replays it.
/// [`IdempotencyLayer`](super::IdempotencyLayer) does this by itself; this layer is for
/// annotated handlers.
///
/// A panic of the handler reaches the caller as it would without the layer.
///
/// ```
/// use idempotent_runtime::http::RunToCompletionLayer;
/// use tower_layer::Layer;
///
/// # #[derive(Clone)] struct Handler;
/// let service = RunToCompletionLayer::new().layer(Handler);
/// # let _ = service;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RunToCompletionLayer {
    _private: (),
}

impl RunToCompletionLayer {
    /// The layer.
    #[must_use]
    pub fn new() -> Self {
        RunToCompletionLayer { _private: () }
    }
}

impl<S> Layer<S> for RunToCompletionLayer {
    type Service = RunToCompletion<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RunToCompletion { inner }
    }
}

/// The service of a [`RunToCompletionLayer`].
#[derive(Debug, Clone)]
pub struct RunToCompletion<S> {
    inner: S,
}

impl<S, R> Service<R> for RunToCompletion<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let handler = tokio::spawn(self.inner.call(request));
        Box::pin(async move {
            match handler.await {
                Ok(result) => result,
                Err(err) => match err.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    // Only a runtime shutting down cancels the task.
                    Err(_) => std::future::pending().await,
                },
            }
        })
    }
}
