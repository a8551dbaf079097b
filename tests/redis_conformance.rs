//! The Redis store passes the conformance suite every store must pass, on one server and
//! on a three-node cluster.

mod support;

use idempotency::conformance::{self, Settings};
use idempotency::RedisStore;
use support::{RedisCluster, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    conformance::check_all(&store, &Settings::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_conforms() {
    let cluster = RedisCluster::start();
    let store = RedisStore::cluster_builder(cluster.urls())
        .connect()
        .await
        .unwrap();
    conformance::check_all(&store, &Settings::default()).await;
}
