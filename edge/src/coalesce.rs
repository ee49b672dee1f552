//! Read coalescing for REST: concurrent requests for the same data share one store read, and
//! the answer is reused for a short time, so a thousand clients loading the stats page cost
//! one query.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

/// One cached answer per key, plus a per-key lock so only one request loads it.
#[derive(Default)]
pub struct Coalescer {
    entries: Mutex<HashMap<&'static str, Arc<Entry>>>,
}

#[derive(Default)]
struct Entry {
    value: Mutex<Option<(Instant, Bytes)>>,
    loading: tokio::sync::Mutex<()>,
}

impl Entry {
    fn fresh(&self, ttl: Duration) -> Option<Bytes> {
        match &*self.value.lock() {
            Some((at, bytes)) if at.elapsed() < ttl => Some(bytes.clone()),
            _ => None,
        }
    }
}

impl Coalescer {
    /// The value under `key` if younger than `ttl`; otherwise loads it once for every caller
    /// waiting at the same time. Errors are not cached.
    pub async fn get<E, F, Fut>(
        &self,
        key: &'static str,
        ttl: Duration,
        load: F,
    ) -> Result<Bytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
    {
        let entry = self.entries.lock().entry(key).or_default().clone();
        if let Some(bytes) = entry.fresh(ttl) {
            return Ok(bytes);
        }
        let _one_loader = entry.loading.lock().await;
        // Whoever held the lock before us may just have loaded it.
        if let Some(bytes) = entry.fresh(ttl) {
            return Ok(bytes);
        }
        metrics::counter!("switchyard_store_reads_total", "op" => key).increment(1);
        let bytes = load().await?;
        *entry.value.lock() = Some((Instant::now(), bytes.clone()));
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_load() {
        let c = Arc::new(Coalescer::default());
        let loads = Arc::new(AtomicU32::new(0));
        let calls: Vec<_> = (0..100)
            .map(|_| {
                let (c, loads) = (c.clone(), loads.clone());
                tokio::spawn(async move {
                    c.get("k", Duration::from_secs(5), || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(Bytes::from_static(b"v"))
                    })
                    .await
                })
            })
            .collect();
        for call in calls {
            assert_eq!(&call.await.unwrap().unwrap()[..], b"v");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Past the ttl it loads again; errors are not kept.
        let err = c
            .get("e", Duration::ZERO, || async { Err::<Bytes, _>("down") })
            .await;
        assert_eq!(err, Err("down"));
        let ok = c
            .get("e", Duration::ZERO, || async {
                Ok::<_, &str>(Bytes::from_static(b"up"))
            })
            .await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"up"));
    }
}
