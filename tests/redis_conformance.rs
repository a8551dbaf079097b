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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_duplicates_on_a_cluster_run_the_body_once() {
    use idempotency::idempotent;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug)]
    struct AppError;
    impl From<idempotency::Error> for AppError {
        fn from(_: idempotency::Error) -> Self {
            AppError
        }
    }
    #[idempotent(name = "cluster.orders", store = node, skip(node))]
    async fn create(node: &RedisStore, customer: u64) -> Result<u64, AppError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        Ok(customer * 3)
    }

    let cluster = RedisCluster::start();
    let node = RedisStore::cluster_builder(cluster.urls())
        .connect()
        .await
        .unwrap();
    // Keys spread over the three masters' slots.
    for customer in 0..20 {
        let calls: Vec<_> = (0..25)
            .map(|_| {
                let node = node.clone();
                tokio::spawn(async move { create(&node, customer).await.unwrap() })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), customer * 3);
        }
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 20);
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
