//! The Redis store passes the conformance suite every store must pass, on one server and
//! on a three-node cluster.

mod support;

use idempotency::store::conformance::{self, Settings};
use idempotency::{idempotent, RedisStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use support::{AppError, Gate, Probe};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_duplicates_on_a_cluster_run_the_body_once() {
    const KEYS: u64 = 20;
    const DUPLICATES: usize = 25;
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    /// One per key: its body holds the claim until every duplicate has found it in flight.
    static GATES: LazyLock<Vec<Gate>> =
        LazyLock::new(|| (0..KEYS).map(|_| Gate::default()).collect());
    #[idempotent(name = "cluster.orders", store = node, skip(node))]
    async fn create(node: &Probe<RedisStore>, customer: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        GATES[usize::try_from(customer).unwrap()].wait().await;
        Ok(customer * 3)
    }

    let cluster = RedisCluster::start();
    let node = Arc::new(Probe::new(
        RedisStore::cluster_builder(cluster.urls())
            .connect()
            .await
            .unwrap(),
    ));
    // Keys spread over the three masters' slots.
    for customer in 0..KEYS {
        let busy = node.busy();
        let calls: Vec<_> = (0..DUPLICATES)
            .map(|_| {
                let node = Arc::clone(&node);
                tokio::spawn(async move { create(&node, customer).await.unwrap() })
            })
            .collect();
        // Every duplicate but the holder is told the key is in flight before it completes.
        tokio::time::timeout(
            Duration::from_secs(30),
            node.until_busy(busy + DUPLICATES - 1),
        )
        .await
        .expect("every duplicate finds the key in flight");
        GATES[usize::try_from(customer).unwrap()].open();
        for call in calls {
            assert_eq!(call.await.unwrap(), customer * 3);
        }
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 20);
    assert_eq!(node.claims(), 20);
    let per_node: Vec<usize> = cluster
        .nodes
        .iter()
        .map(|n| n.cli(&["DBSIZE"]).trim().parse().unwrap())
        .collect();
    assert_eq!(per_node.iter().sum::<usize>(), 20);
    assert!(
        per_node.iter().all(|&n| n > 0),
        "records on every master: {per_node:?}"
    );
}
