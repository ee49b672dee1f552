//! Every request the adapter sends goes through here: a semaphore bounds how many are in flight,
//! transient failures of idempotent statements are retried with exponential backoff, reads are
//! paged, and driver errors become `StoreError::Scylla` naming the operation.

use std::time::Duration;

use ::scylla::client::session::Session;
use ::scylla::deserialize::row::DeserializeRow;
use ::scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use ::scylla::response::query_result::QueryResult;
use ::scylla::response::{PagingState, PagingStateResponse};
use ::scylla::serialize::batch::BatchValues;
use ::scylla::serialize::row::SerializeRow;
use ::scylla::statement::batch::Batch;
use ::scylla::statement::prepared::PreparedStatement;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use switchyard_schema::backoff::Backoff;
use tokio::sync::Semaphore;

use crate::{StoreError, StoreResult};

/// Attempts of one idempotent request in all (the driver's own retry policy runs inside each:
/// it moves to another replica at once; these add time for an overloaded cluster to recover).
const ATTEMPTS: u32 = 3;
/// 25 ms, then 50 ms (only `ATTEMPTS` tries: the cap is never reached).
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(25), Duration::from_secs(1));

pub fn error(op: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Scylla {
        op,
        source: Box::new(e),
    }
}

pub struct Db {
    session: Session,
    in_flight: Semaphore,
}

impl Db {
    pub fn new(session: Session, max_in_flight: usize) -> Self {
        Self {
            session,
            in_flight: Semaphore::new(max_in_flight),
        }
    }

    /// Runs one request under an in-flight permit, retrying transient failures when the
    /// statement is idempotent (re-sending it cannot change the outcome).
    async fn send<T, F, Fut>(
        &self,
        op: &'static str,
        idempotent: bool,
        mut call: F,
    ) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ExecutionError>>,
    {
        let mut attempt = 1;
        loop {
            let result = {
                let _permit = self
                    .in_flight
                    .acquire()
                    .await
                    .map_err(|_| StoreError::Closed)?;
                call().await
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if idempotent && attempt < ATTEMPTS && is_transient(&e) => {
                    metrics::counter!("switchyard_store_retries_total", "op" => op).increment(1);
                    tracing::debug!(op, attempt, error = %e, "retrying a store request");
                    tokio::time::sleep(BACKOFF.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(error(op, e)),
            }
        }
    }

    /// A write or a single-page read.
    pub async fn execute<V: SerializeRow>(
        &self,
        op: &'static str,
        statement: &PreparedStatement,
        values: &V,
    ) -> StoreResult<QueryResult> {
        self.send(op, statement.get_is_idempotent(), || {
            self.session.execute_unpaged(statement, values)
        })
        .await
    }

    pub async fn batch<V: BatchValues>(
        &self,
        op: &'static str,
        batch: &Batch,
        values: &V,
    ) -> StoreResult<()> {
        self.send(op, batch.get_is_idempotent(), || {
            self.session.batch(batch, values)
        })
        .await
        .map(drop)
    }

    /// The first row of an unpaged read (statements with `LIMIT 1` or a full primary key).
    pub async fn first<R, V>(
        &self,
        op: &'static str,
        statement: &PreparedStatement,
        values: &V,
    ) -> StoreResult<Option<R>>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
        V: SerializeRow,
    {
        let rows = self
            .execute(op, statement, values)
            .await?
            .into_rows_result()
            .map_err(|e| error(op, e))?;
        rows.maybe_first_row::<R>().map_err(|e| error(op, e))
    }

    async fn page<R, V>(
        &self,
        op: &'static str,
        statement: &PreparedStatement,
        values: &V,
        state: PagingState,
    ) -> StoreResult<(Vec<R>, Option<PagingState>)>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
        V: SerializeRow,
    {
        let (result, next) = self
            .send(op, statement.get_is_idempotent(), || {
                self.session
                    .execute_single_page(statement, values, state.clone())
            })
            .await?;
        let rows = result.into_rows_result().map_err(|e| error(op, e))?;
        let page = rows
            .rows::<R>()
            .map_err(|e| error(op, e))?
            .collect::<Result<Vec<R>, _>>()
            .map_err(|e| error(op, e))?;
        let next = match next {
            PagingStateResponse::HasMorePages { state } => Some(state),
            PagingStateResponse::NoMorePages => None,
        };
        Ok((page, next))
    }

    /// Every row of a read, fetched a page (the statement's page size) at a time as the stream
    /// is consumed; dropping the stream stops the reading.
    pub fn rows<'a, R, V>(
        &'a self,
        op: &'static str,
        statement: &'a PreparedStatement,
        values: V,
    ) -> BoxStream<'a, StoreResult<R>>
    where
        R: for<'f> DeserializeRow<'f, 'f> + Send + 'a,
        V: SerializeRow + Send + Sync + 'a,
    {
        stream::try_unfold(
            (Some(PagingState::start()), values),
            move |(state, values)| async move {
                let Some(state) = state else {
                    return Ok::<_, StoreError>(None);
                };
                let (page, next) = self.page::<R, V>(op, statement, &values, state).await?;
                Ok(Some((
                    stream::iter(page.into_iter().map(Ok)),
                    (next, values),
                )))
            },
        )
        .try_flatten()
        .boxed()
    }

    /// Every row of a read, all pages.
    pub async fn all<R, V>(
        &self,
        op: &'static str,
        statement: &PreparedStatement,
        values: V,
    ) -> StoreResult<Vec<R>>
    where
        R: for<'f> DeserializeRow<'f, 'f> + Send,
        V: SerializeRow + Send + Sync,
    {
        self.rows(op, statement, values).try_collect().await
    }
}

/// Failures a later attempt may not meet: timeouts, overload, a node down or restarting.
/// Everything else (a bad statement, a missing table, auth) fails at once.
fn is_transient(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::RequestTimeout(_) | ExecutionError::ConnectionPoolError(_) => true,
        ExecutionError::LastAttemptError(attempt) => match attempt {
            RequestAttemptError::BrokenConnectionError(_)
            | RequestAttemptError::UnableToAllocStreamId => true,
            RequestAttemptError::DbError(db, _) => matches!(
                db,
                DbError::Unavailable { .. }
                    | DbError::Overloaded
                    | DbError::IsBootstrapping
                    | DbError::ReadTimeout { .. }
                    | DbError::WriteTimeout { .. }
                    | DbError::RateLimitReached { .. }
                    | DbError::ServerError
            ),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        let timeout = ExecutionError::RequestTimeout(Duration::from_secs(1));
        assert!(is_transient(&timeout));
        let overloaded = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Overloaded,
            "busy".into(),
        ));
        assert!(is_transient(&overloaded));
        let syntax = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::SyntaxError,
            "bad".into(),
        ));
        assert!(!is_transient(&syntax));
        let invalid = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            "unconfigured table".into(),
        ));
        assert!(!is_transient(&invalid));
    }
}
