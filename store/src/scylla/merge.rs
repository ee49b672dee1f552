//! Newest-first reads over several partitions (the shards of a day): each partition comes back
//! already sorted, so a k-way merge yields the first `limit` rows of their union while reading
//! only about that many rows, page by page.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use futures::stream::{BoxStream, TryStreamExt};

use crate::StoreResult;

/// The first `limit` items of the union of `streams`, each of which yields items in descending
/// `key` order, in descending `key` order. Ties go to the lower stream index.
pub async fn take_desc<T, K, F>(
    mut streams: Vec<BoxStream<'_, StoreResult<T>>>,
    key: F,
    limit: usize,
) -> StoreResult<Vec<T>>
where
    K: Ord,
    F: Fn(&T) -> K,
{
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    // The first page of every stream at once: one round trip instead of one per stream.
    let firsts = futures::future::try_join_all(streams.iter_mut().map(|s| s.try_next())).await?;
    let mut heap = BinaryHeap::with_capacity(streams.len());
    for (index, first) in firsts.into_iter().enumerate() {
        if let Some(item) = first {
            heap.push(Head {
                key: key(&item),
                index,
                item,
            });
        }
    }
    while let Some(Head { index, item, .. }) = heap.pop() {
        out.push(item);
        if out.len() == limit {
            break;
        }
        if let Some(item) = streams[index].try_next().await? {
            heap.push(Head {
                key: key(&item),
                index,
                item,
            });
        }
    }
    Ok(out)
}

struct Head<K, T> {
    key: K,
    index: usize,
    item: T,
}

impl<K: Ord, T> Ord for Head<K, T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap on the key; on a tie the lower index is "greater", so it pops first.
        self.key
            .cmp(&other.key)
            .then_with(|| other.index.cmp(&self.index))
    }
}

impl<K: Ord, T> PartialOrd for Head<K, T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K: Ord, T> PartialEq for Head<K, T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K: Ord, T> Eq for Head<K, T> {}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use futures::stream::{self, StreamExt};

    use super::*;
    use crate::StoreError;

    fn source(items: Vec<i64>, pulled: Arc<AtomicUsize>) -> BoxStream<'static, StoreResult<i64>> {
        stream::iter(items)
            .map(move |i| {
                pulled.fetch_add(1, Ordering::SeqCst);
                Ok(i)
            })
            .boxed()
    }

    #[tokio::test]
    async fn merges_sorted_streams_newest_first_up_to_the_limit() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let streams = vec![
            source(vec![9, 4, 1], pulled.clone()),
            source(vec![], pulled.clone()),
            source(vec![8, 7, 6, 5, 3, 2], pulled.clone()),
        ];
        let all = take_desc(streams, |i| *i, 100).await.unwrap();
        assert_eq!(all, vec![9, 8, 7, 6, 5, 4, 3, 2, 1]);

        let pulled = Arc::new(AtomicUsize::new(0));
        let streams = vec![
            source((0..1000).rev().collect(), pulled.clone()),
            source((0..1000).rev().collect(), pulled.clone()),
        ];
        let top = take_desc(streams, |i| *i, 3).await.unwrap();
        assert_eq!(top, vec![999, 999, 998]);
        assert!(
            pulled.load(Ordering::SeqCst) <= 4,
            "reads only what the limit needs"
        );
    }

    #[tokio::test]
    async fn ties_keep_stream_order_and_zero_limit_reads_nothing() {
        let streams: Vec<BoxStream<'static, StoreResult<(i64, &str)>>> = vec![
            stream::iter(vec![Ok((5, "a")), Ok((1, "a"))]).boxed(),
            stream::iter(vec![Ok((5, "b"))]).boxed(),
        ];
        let got = take_desc(streams, |t| t.0, 10).await.unwrap();
        assert_eq!(got, vec![(5, "a"), (5, "b"), (1, "a")]);
        let pulled = Arc::new(AtomicUsize::new(0));
        let none = take_desc(vec![source(vec![1], pulled.clone())], |i| *i, 0)
            .await
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(pulled.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_error_in_any_stream_fails_the_read() {
        let streams: Vec<BoxStream<'static, StoreResult<i64>>> = vec![
            stream::iter(vec![Ok(3), Err(StoreError::Closed)]).boxed(),
            stream::iter(vec![Ok(2)]).boxed(),
        ];
        assert!(matches!(
            take_desc(streams, |i| *i, 10).await,
            Err(StoreError::Closed)
        ));
    }
}
