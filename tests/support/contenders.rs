//! The workload of every benchmark, `create_order(customer, sku, qty) -> Order`, as each
//! contender a user could pick would write it.

use cached::proc_macro::cached;
use idempotency::{idempotent, MemoryStore};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub customer: u64,
    pub sku: String,
    pub qty: u32,
}

#[derive(Debug)]
pub struct AppError;

impl From<idempotency::Error> for AppError {
    fn from(_: idempotency::Error) -> Self {
        AppError
    }
}

/// Criterion's median for one benchmark of this run, in nanoseconds, read from its
/// report under the target directory.
pub fn median(group: &str, id: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            // <target>/release/deps/<bench>-<hash>
            std::env::current_exe()
                .ok()?
                .ancestors()
                .nth(3)
                .map(std::path::PathBuf::from)
        })?;
    let path = target
        .join("criterion")
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// Bodies run, across all contenders: the parallel benchmark checks it.
pub static EXECUTIONS: AtomicU64 = AtomicU64::new(0);

fn order(customer: u64, sku: String, qty: u32) -> Order {
    EXECUTIONS.fetch_add(1, Ordering::Relaxed);
    Order {
        id: customer.wrapping_mul(31) + u64::from(qty),
        customer,
        sku,
        qty,
    }
}

/// Empties the cache of contender `name` (and `store`, ours), for a benchmark of misses.
pub async fn clear(name: &str, store: &MemoryStore) {
    use cached::Cached;
    match name {
        "hand_map" => HAND_MAP.lock().unwrap().clear(),
        "cached" => WITH_CACHED.write().await.cache_clear(),
        "moka" => {
            MOKA.invalidate_all();
            MOKA.run_pending_tasks().await;
        }
        _ => store.clear(),
    }
}

/// No memoization at all.
pub async fn plain(customer: u64, sku: String, qty: u32) -> Order {
    order(customer, sku, qty)
}

/// A hand-written `Mutex<HashMap>`: get and clone, else compute and insert. No expiry, no
/// deduplication of parallel calls.
pub async fn hand_map(customer: u64, sku: String, qty: u32) -> Order {
    let key = (customer, sku, qty);
    if let Some(hit) = HAND_MAP.lock().unwrap().get(&key) {
        return hit.clone();
    }
    let fresh = order(customer, key.1.clone(), qty);
    HAND_MAP.lock().unwrap().insert(key, fresh.clone());
    fresh
}

type Map = HashMap<(u64, String, u32), Order>;
static HAND_MAP: LazyLock<Mutex<Map>> = LazyLock::new(Mutex::default);

static MOKA: LazyLock<moka::future::Cache<(u64, String, u32), Order>> = LazyLock::new(|| {
    moka::future::Cache::builder()
        .time_to_live(Duration::from_secs(86400))
        .build()
});

/// `cached`, deduplicating parallel calls by key.
#[cached(ttl_secs = 86400, sync_writes = "by_key")]
pub async fn with_cached(customer: u64, sku: String, qty: u32) -> Order {
    order(customer, sku, qty)
}

/// `moka`'s `get_with`, which coalesces parallel calls.
pub async fn with_moka(customer: u64, sku: String, qty: u32) -> Order {
    let key = (customer, sku, qty);
    MOKA.get_with_by_ref(&key, async { order(key.0, key.1.clone(), key.2) })
        .await
}

/// This crate, on the embedded store.
#[idempotent(ttl = "24h", name = "bench.create_order")]
pub async fn with_idempotency(customer: u64, sku: String, qty: u32) -> Result<Order, AppError> {
    Ok(order(customer, sku, qty))
}

/// This crate on a given store (for the scale benchmark).
#[idempotent(ttl = "24h", name = "bench.scaled", store = store, skip(store))]
pub async fn with_idempotency_on(
    store: &MemoryStore,
    customer: u64,
    sku: String,
    qty: u32,
) -> Result<Order, AppError> {
    Ok(order(customer, sku, qty))
}

/// The slow variants: a 20 ms body, for parallel duplicates.
pub mod slow {
    use super::*;

    pub const BODY: Duration = Duration::from_millis(20);

    pub async fn plain(customer: u64, sku: String, qty: u32) -> Order {
        tokio::time::sleep(BODY).await;
        order(customer, sku, qty)
    }

    #[cached(ttl_secs = 86400, sync_writes = "by_key")]
    pub async fn with_cached(customer: u64, sku: String, qty: u32) -> Order {
        tokio::time::sleep(BODY).await;
        order(customer, sku, qty)
    }

    pub async fn with_moka(customer: u64, sku: String, qty: u32) -> Order {
        static CACHE: LazyLock<moka::future::Cache<(u64, String, u32), Order>> =
            LazyLock::new(|| moka::future::Cache::builder().build());
        let key = (customer, sku, qty);
        CACHE
            .get_with_by_ref(&key, async {
                tokio::time::sleep(BODY).await;
                order(key.0, key.1.clone(), key.2)
            })
            .await
    }

    #[idempotent(ttl = "24h", name = "bench.slow")]
    pub async fn with_idempotency(customer: u64, sku: String, qty: u32) -> Result<Order, AppError> {
        tokio::time::sleep(BODY).await;
        Ok(order(customer, sku, qty))
    }
}
