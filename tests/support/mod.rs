//! Support shared by the tests and the benchmarks (which include this module by path): the
//! one place for it.
//!
//! - [`app`]: an application's error type, stores that count calls ([`Probe`]) or hide the
//!   in-process fast path ([`Plain`]), gates, runtimes, direct store steps.
//! - [`servers`]: real `redis-server` processes and clusters, started per test.
//! - [`postgres`]: real PostgreSQL clusters and servers, created and started per test.
//! - [`http`]: the HTTP example as a server process, and an HTTP/1.1 client.
//! - [`proxy`]: a TCP proxy between a store and its server, to freeze or cut connections.
//! - [`contenders`]: the benchmarks' workload, as each alternative a user could pick writes it.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test and bench binary uses a different part"
)]

pub mod app;
pub mod contenders;
pub mod http;
pub mod postgres;
pub mod proxy;
pub mod servers;

pub use app::*;
pub use servers::*;
