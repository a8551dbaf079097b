//! [`IdempotencyLayer`]: idempotent HTTP requests for any tower service.

use super::body::read_limited;
use super::key::{IdempotencyKey, KeyRejection};
use super::problem::Problem;
use super::record::{self, Fresh, Read};
use crate::engine::{self, Call, Finished, Produced};
use crate::error::Error;
use crate::key::{Fingerprint, KeyHasher, NamespaceKey};
use crate::store::{Namespace, Request as StoreRequest, Store};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{request, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Either, Full};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// The response header that marks a replay.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The body of the layer's responses: a buffered response (fresh, replayed or a problem),
/// or the inner service's own body where the layer stood aside.
pub type LayerBody<B> = Either<Full<Bytes>, B>;

/// A response extension by which a handler overrides the layer's default rule (2xx is
/// stored, anything else frees the key): `StoreResponse(true)` stores this 4xx,
/// `StoreResponse(false)` does not store this 2xx.
///
/// ```
/// use idempotent_runtime::http::StoreResponse;
///
/// let mut response = http::Response::new(());
/// *response.status_mut() = http::StatusCode::PAYMENT_REQUIRED;
/// // A declined card is the answer to this request: retries replay it.
/// response.extensions_mut().insert(StoreResponse(true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreResponse(pub bool);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Scope = Arc<dyn Fn(&request::Parts) -> Option<String> + Send + Sync>;

/// A tower [`Layer`] that makes the requests of a service idempotent, by their
/// `Idempotency-Key` header (draft-ietf-httpapi-idempotency-key-header), on any
/// [`Store`].
///
/// For each request with a key:
/// - **Replay**: a completed request with the same key (in the same scope) and the same
///   request gets the stored response, byte for byte: status, the stored headers and the
///   body, with `Idempotent-Replayed: true`. The inner service is not called.
/// - **Wait**: a duplicate of a request in flight waits for its response (by default up to
///   30 s, or [`fail_fast`](Self::fail_fast)), then gets `409` with `Retry-After`.
/// - **Run**: otherwise the inner service runs, in a task of its own, so that a client that
///   disconnects does not cut the handler in half: its response is stored either way.
///   A `2xx` response is stored for the TTL; any other frees the key at once, so that the
///   retry runs (a handler overrides this per response with [`StoreResponse`]).
///
/// Rejections are RFC 9457 problems (see [`Problem`]): missing or malformed key `400`,
/// key reused with another request `422` ([`mismatch_status`](Self::mismatch_status)),
/// body over the limit `413`, store unreachable `503` with `Retry-After` (fail closed: the
/// service never runs without a claim).
///
/// The request's **fingerprint** is its method, path, query (with its pairs sorted),
/// `Content-Type`, body and the headers named by
/// [`fingerprint_header`](Self::fingerprint_header). Its **scope** (a tenant, a user)
/// comes from [`scoped`](Self::scoped); a layer without one is built with
/// [`unscoped`](Self::unscoped), on purpose.
///
/// ```
/// use idempotent_runtime::http::IdempotencyLayer;
/// use idempotent_runtime::MemoryStore;
/// use std::time::Duration;
///
/// let layer = IdempotencyLayer::scoped(MemoryStore::new(), |request| {
///     let tenant = request.headers.get("x-tenant")?;
///     Some(String::from_utf8_lossy(tenant.as_bytes()).into_owned())
/// })
/// .namespace("payments")
/// .ttl(Duration::from_secs(24 * 3600));
/// # let _ = layer;
/// ```
pub struct IdempotencyLayer<St> {
    config: Arc<Config<St>>,
}

impl<St> Clone for IdempotencyLayer<St> {
    fn clone(&self) -> Self {
        IdempotencyLayer {
            config: Arc::clone(&self.config),
        }
    }
}

impl<St> fmt::Debug for IdempotencyLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("namespace", &self.config.namespace)
            .field("ttl", &self.config.ttl)
            .field("wait", &self.config.wait)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Config<St> {
    store: St,
    namespace: Namespace,
    keys: NamespaceKey,
    scope: Option<Scope>,
    ttl: Duration,
    wait: Duration,
    lease: Option<Duration>,
    key_required: bool,
    body_limit: usize,
    capture_limit: usize,
    stored_headers: Arc<[HeaderName]>,
    fingerprint_headers: Vec<HeaderName>,
    mismatch_status: StatusCode,
    problem_base: Arc<str>,
}

/// Headers a replay carries by default: they describe the response, not the connection
/// or the client.
const STORED_HEADERS: [HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::ETAG,
    header::LAST_MODIFIED,
    header::LINK,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LOCATION,
];

/// Headers never stored nor replayed: they belong to one client, one connection or one
/// moment.
const NEVER_STORED: [HeaderName; 14] = [
    header::SET_COOKIE,
    header::WWW_AUTHENTICATE,
    header::AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::DATE,
    header::CONTENT_LENGTH,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

impl<St> IdempotencyLayer<St> {
    /// The default limit of a request body: 1 MiB.
    pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
    /// The default limit of a stored response body: 4 MiB.
    pub const DEFAULT_CAPTURE_LIMIT: usize = 4 << 20;
    /// The default namespace of the records.
    pub const DEFAULT_NAMESPACE: &'static str = "http";

    /// A layer whose keys are partitioned by `scope`: the tenant or principal of a request
    /// (`None` for a request without one). Two tenants that send the same key make two
    /// requests. Take the scope from what the server trusts (an authenticated principal),
    /// not from what any client may set.
    pub fn scoped<F>(store: St, scope: F) -> Self
    where
        F: Fn(&request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        Self::with_scope(store, Some(Arc::new(scope)))
    }

    /// A layer whose keys are shared by every client: one client's key can collide with
    /// another's, and a client that guesses another's key gets a mismatch or a replay of
    /// its response. Choose it only where every client is the same principal.
    pub fn unscoped(store: St) -> Self {
        Self::with_scope(store, None)
    }

    fn with_scope(store: St, scope: Option<Scope>) -> Self {
        let namespace = Namespace::from_static(Self::DEFAULT_NAMESPACE);
        IdempotencyLayer {
            config: Arc::new(Config {
                store,
                keys: NamespaceKey::new(&namespace),
                namespace,
                scope,
                ttl: Call::DEFAULT_TTL,
                wait: Call::DEFAULT_WAIT,
                lease: None,
                key_required: true,
                body_limit: Self::DEFAULT_BODY_LIMIT,
                capture_limit: Self::DEFAULT_CAPTURE_LIMIT,
                stored_headers: STORED_HEADERS.into(),
                fingerprint_headers: Vec::new(),
                mismatch_status: StatusCode::UNPROCESSABLE_ENTITY,
                problem_base: super::problem_base().into(),
            }),
        }
    }
}

impl<St: Clone> IdempotencyLayer<St> {
    /// Changes this layer's settings; clones made before keep theirs.
    fn edit(mut self, change: impl FnOnce(&mut Config<St>)) -> Self {
        change(Arc::make_mut(&mut self.config));
        self
    }

    /// The namespace of the records (default `"http"`): layers with different namespaces
    /// never share records.
    #[must_use]
    pub fn namespace(self, namespace: impl Into<Namespace>) -> Self {
        let namespace = namespace.into();
        self.edit(|config| {
            config.keys = NamespaceKey::new(&namespace);
            config.namespace = namespace;
        })
    }

    /// How long a stored response is kept (default 24 hours).
    #[must_use]
    pub fn ttl(self, ttl: Duration) -> Self {
        self.edit(|config| config.ttl = ttl)
    }

    /// How long a duplicate waits for a request in flight (default 30 s) before `409`.
    #[must_use]
    pub fn wait(self, wait: Duration) -> Self {
        self.edit(|config| config.wait = wait)
    }

    /// A duplicate of a request in flight gets `409` at once.
    #[must_use]
    pub fn fail_fast(self) -> Self {
        self.wait(Duration::ZERO)
    }

    /// The lease of a claim (default: the store's).
    #[must_use]
    pub fn lease(self, lease: Duration) -> Self {
        self.edit(|config| config.lease = Some(lease))
    }

    /// Requests without an `Idempotency-Key` pass through, not deduplicated (by default
    /// they get `400`). A malformed key is still refused.
    #[must_use]
    pub fn key_optional(self) -> Self {
        self.edit(|config| config.key_required = false)
    }

    /// The largest request body read (default 1 MiB): a longer one gets `413` before the
    /// store is touched, by its `Content-Length` or while it is read.
    #[must_use]
    pub fn body_limit(self, bytes: usize) -> Self {
        self.edit(|config| config.body_limit = bytes)
    }

    /// The largest response body stored (default 4 MiB). A longer one still reaches its
    /// caller; its retries get a `500` problem (`response-not-replayable`), and the inner
    /// service does not run again.
    #[must_use]
    pub fn capture_limit(self, bytes: usize) -> Self {
        self.edit(|config| config.capture_limit = bytes)
    }

    /// Adds a response header to those a replay carries. The headers that belong to one
    /// client or connection (`Set-Cookie`, `WWW-Authenticate`, `Authorization`, hop-by-hop
    /// headers, `Date`, `Content-Length`, `Transfer-Encoding`) are never stored, even when
    /// named here.
    #[must_use]
    pub fn store_header(self, name: HeaderName) -> Self {
        if NEVER_STORED.contains(&name) {
            return self;
        }
        self.edit(|config| {
            let mut names = config.stored_headers.to_vec();
            if !names.contains(&name) {
                names.push(name);
            }
            config.stored_headers = names.into();
        })
    }

    /// Adds a request header to the fingerprint: a retry whose value differs is a reused
    /// key.
    #[must_use]
    pub fn fingerprint_header(self, name: HeaderName) -> Self {
        self.edit(|config| config.fingerprint_headers.push(name))
    }

    /// The status of a key reused with another request (default `422`; some clients
    /// expect `409` or `400`).
    #[must_use]
    pub fn mismatch_status(self, status: StatusCode) -> Self {
        self.edit(|config| config.mismatch_status = status)
    }

    /// The base of the problems' `type` URIs (default
    /// [`problem_base()`](super::problem_base)).
    #[must_use]
    pub fn problem_base(self, base: impl Into<Arc<str>>) -> Self {
        let base = base.into();
        self.edit(|config| config.problem_base = base)
    }
}

impl<S, St> Layer<S> for IdempotencyLayer<St> {
    type Service = Idempotency<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service of an [`IdempotencyLayer`].
pub struct Idempotency<S, St> {
    inner: S,
    config: Arc<Config<St>>,
}

impl<S: Clone, St> Clone for Idempotency<S, St> {
    fn clone(&self) -> Self {
        Idempotency {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, St> fmt::Debug for Idempotency<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("namespace", &self.config.namespace)
            .finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for Idempotency<S, St>
where
    S: Service<Request<Either<Full<Bytes>, ReqBody>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
    St: Store + Clone + Send + Sync + 'static,
{
    type Response = Response<LayerBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready serves this request; the clone waits for the
        // next one (tower's `Clone` + `mem::replace` idiom).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        Box::pin(serve(config, inner, request))
    }
}

fn problem<B>(config: &Config<impl Sized>, problem: &Problem) -> Response<LayerBody<B>> {
    problem.to_response(&config.problem_base).map(Either::Left)
}

async fn serve<S, St, ReqBody, ResBody>(
    config: Arc<Config<St>>,
    mut inner: S,
    request: Request<ReqBody>,
) -> Result<Response<LayerBody<ResBody>>, S::Error>
where
    S: Service<Request<Either<Full<Bytes>, ReqBody>>, Response = Response<ResBody>>
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
    St: Store + Clone + Send + Sync + 'static,
{
    let (parts, body) = request.into_parts();
    let key = match IdempotencyKey::from_headers(&parts.headers) {
        Ok(Some(key)) => key,
        Ok(None) if !config.key_required => {
            let request = Request::from_parts(parts, Either::Right(body));
            return Ok(inner.call(request).await?.map(Either::Right));
        }
        Ok(None) => return Ok(problem(&config, &Problem::key(KeyRejection::Missing))),
        Err(rejection) => return Ok(problem(&config, &Problem::key(rejection))),
    };
    let body = match read_limited(&parts.headers, body, config.body_limit).await {
        Ok(body) => body,
        Err(rejection) => return Ok(problem(&config, &rejection)),
    };
    let call = match config.call(&key, &parts, &body) {
        Ok(call) => call,
        Err(err) => return Ok(problem(&config, &Problem::from_error(&err))),
    };
    let request = Request::from_parts(parts, Either::Left(Full::new(body)));

    // A task of its own: if the client goes away, this future is dropped, but the handler
    // runs to its end and its response is stored, for the retry to replay.
    let task = {
        let config = Arc::clone(&config);
        tokio::spawn(async move {
            let producing = Arc::clone(&config);
            let handler = async move {
                match inner.call(request).await {
                    Ok(response) => producing.produced(response).await,
                    Err(err) => Produced::Discard(Err(err)),
                }
            };
            engine::run(&config.store, &call, handler).await
        })
    };
    match task.await {
        Ok(Ok(Finished::Fresh(fresh))) => Ok(Response::from_parts(
            fresh.parts,
            Either::Left(Full::new(fresh.body)),
        )),
        Ok(Ok(Finished::Failed(Ok(response)))) => Ok(response),
        Ok(Ok(Finished::Failed(Err(err)))) => Err(err),
        Ok(Ok(Finished::Replayed(stored))) => Ok(config.replay(&stored)),
        Ok(Err(err)) => {
            let answer = Problem::from_error(&err);
            let answer = match err {
                Error::PayloadMismatch { .. } => answer.with_status(config.mismatch_status),
                _ => answer,
            };
            Ok(problem(&config, &answer))
        }
        // The handler panicked: its claim was abandoned, the key is free.
        Err(_) => Ok(problem(&config, &Problem::handler_failed())),
    }
}

/// A request body's bytes, in the fingerprint as one byte string.
struct Octets<'a>(&'a [u8]);

impl serde::Serialize for Octets<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<St> Config<St> {
    /// The call of a request: its key (the client's key in its scope) and its fingerprint.
    fn call(
        &self,
        key: &IdempotencyKey,
        parts: &request::Parts,
        body: &[u8],
    ) -> Result<Call, Error> {
        let scope = self.scope.as_ref().and_then(|scope| scope(parts));
        let mut hasher = KeyHasher::with_namespace(&self.keys);
        hasher.arg("scope", &scope);
        hasher.client_key(key.as_str()).map_err(Error::InvalidKey)?;
        let key = hasher.finish().map_err(Error::Key)?;

        let mut query: Vec<&str> = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .collect();
        query.sort_unstable();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(|value| Octets(value.as_bytes()));
        let headers: Vec<(&str, Vec<Octets<'_>>)> = self
            .fingerprint_headers
            .iter()
            .map(|name| {
                let values = parts.headers.get_all(name).iter();
                (
                    name.as_str(),
                    values.map(|v| Octets(v.as_bytes())).collect(),
                )
            })
            .collect();
        // In ascending order of the names, as the key format asks.
        let mut fingerprint = KeyHasher::fingerprint_with_namespace(&self.keys);
        fingerprint
            .arg("body", &Octets(body))
            .arg("content_type", &content_type)
            .arg("headers", &headers)
            .arg("method", parts.method.as_str())
            .arg("path", parts.uri.path())
            .arg("query", &query);
        let fingerprint: Fingerprint = fingerprint.finish_fingerprint().map_err(Error::Key)?;
        Ok(Call {
            request: StoreRequest {
                namespace: self.namespace.clone(),
                key,
                fingerprint,
                lease: self.lease,
            },
            ttl: self.ttl,
            wait: self.wait,
        })
    }

    /// What the handler's response becomes: stored (2xx, or as it says), or handed back.
    async fn produced<B, E>(
        &self,
        response: Response<B>,
    ) -> Produced<Fresh, Result<Response<LayerBody<B>>, E>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let keep = match response.extensions().get::<StoreResponse>() {
            Some(StoreResponse(keep)) => *keep,
            None => response.status().is_success(),
        };
        if !keep {
            return Produced::Discard(Ok(response.map(Either::Right)));
        }
        let (parts, body) = response.into_parts();
        match body.collect().await {
            Ok(collected) => {
                let body = collected.to_bytes();
                Produced::Store(Fresh {
                    over_capture_limit: body.len() > self.capture_limit,
                    parts,
                    body,
                    stored_headers: Arc::clone(&self.stored_headers),
                })
            }
            // The response broke off: nothing to store, and the key is free again.
            Err(_) => Produced::Discard(Ok(problem(self, &Problem::handler_failed()))),
        }
    }

    /// The response of a replay.
    fn replay<B>(&self, stored: &Arc<[u8]>) -> Response<LayerBody<B>> {
        match record::read(stored) {
            Read::Response(stored) => {
                let mut response = Response::new(Either::Left(Full::new(stored.body)));
                *response.status_mut() = stored.status;
                *response.headers_mut() = stored.headers;
                response
                    .headers_mut()
                    .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
                response
            }
            Read::Unreplayable => problem(self, &Problem::not_replayable()),
            Read::Unreadable => problem(self, &Problem::record_unreadable()),
        }
    }
}
