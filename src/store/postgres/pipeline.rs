//! Statements sent together and answered in order (a [`Pipeline`]), and
//! why a write batch's transaction did not commit ([`Attempt`],
//! [`BatchFailed`]): what the writer (`writer`), the multi-row writes
//! (`bulk`) and each write on its own (`writes`) share.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use deadpool_postgres::ClientWrapper;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use super::is_read_only;
use crate::store::StoreError;

/// A statement's answer: its rows, once they came.
pub(super) type Answer<'a> = Pin<Box<dyn Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a>>;

/// Prepared statements sent together, in order, before any answer is
/// awaited: tokio-postgres sends a statement when its future is first
/// polled, and the server runs and answers them in that order.
pub(super) struct Pipeline<'a> {
    client: &'a ClientWrapper,
    statements: Vec<Answer<'a>>,
}

impl<'a> Pipeline<'a> {
    pub(super) fn new(client: &'a ClientWrapper) -> Self {
        Pipeline { client, statements: Vec::new() }
    }

    /// Adds a statement; answers its place among the answers.
    pub(super) fn push(&mut self, statement: &'a Statement, params: Vec<&'a (dyn ToSql + Sync)>) -> usize {
        let client = self.client;
        self.statements.push(Box::pin(async move { client.query(statement, &params).await }));
        self.statements.len() - 1
    }

    /// Adds a statement sent by `answer` itself (a copy, say), which the
    /// pipeline polls in its place; answers its place among the answers.
    pub(super) fn push_answer(&mut self, answer: Answer<'a>) -> usize {
        self.statements.push(answer);
        self.statements.len() - 1
    }

    /// The connection the statements go out on.
    pub(super) fn client(&self) -> &'a ClientWrapper {
        self.client
    }

    /// Sends every statement and answers each one's rows or error.
    pub(super) async fn run(self) -> Vec<Result<Vec<Row>, tokio_postgres::Error>> {
        let mut pending: Vec<Option<Answer<'a>>> = self.statements.into_iter().map(Some).collect();
        let mut answers: Vec<Option<Result<Vec<Row>, tokio_postgres::Error>>> = pending.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut done = true;
            for (slot, answer) in pending.iter_mut().zip(answers.iter_mut()) {
                let Some(statement) = slot else { continue };
                match statement.as_mut().poll(cx) {
                    Poll::Ready(result) => {
                        *answer = Some(result);
                        *slot = None;
                    }
                    Poll::Pending => done = false,
                }
            }
            if done { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
        answers.into_iter().map(|answer| answer.expect("every statement answered")).collect()
    }
}

/// Why a transaction did not commit.
pub(super) enum Attempt {
    /// Postgres refused a multi-row statement; the transaction is rolled
    /// back, and one write of the batch is at fault.
    Refused(StoreError),
    Failed(BatchFailed),
}

impl Attempt {
    /// The attempt a failed statement ends: refused when Postgres refused a
    /// `multi_row` statement, which one write of the batch may be at fault
    /// for; failed otherwise, and whenever Postgres is unavailable.
    pub(super) fn after(cause: StoreError, multi_row: bool) -> Self {
        match cause {
            StoreError::Unavailable(_) => Attempt::Failed(cause.into()),
            refused if multi_row => Attempt::Refused(refused),
            failed => Attempt::Failed(failed.into()),
        }
    }
}

/// The first failed statement of a pipeline's answers: its place and why.
/// Postgres refuses every statement after it in the same transaction.
pub(super) fn first_failure(answers: &mut Vec<Result<Vec<Row>, tokio_postgres::Error>>) -> Option<(usize, StoreError)> {
    let failed = answers.iter().position(Result::is_err)?;
    Some((failed, answers.swap_remove(failed).expect_err("the failed answer").into()))
}

impl<E: Into<BatchFailed>> From<E> for Attempt {
    fn from(e: E) -> Self {
        Attempt::Failed(e.into())
    }
}

/// Why a whole batch failed, told to each of its writes.
#[derive(Debug, thiserror::Error)]
#[error("the write batch did not commit: {message}")]
pub(super) struct BatchFailed {
    message: String,
    pub(super) transient: bool,
    /// Postgres refused it as read-only: the server no longer takes writes.
    pub(super) read_only: bool,
}

impl BatchFailed {
    pub(super) fn for_each_write(&self) -> StoreError {
        let cause = Box::new(BatchFailed {
            message: self.message.clone(),
            transient: self.transient,
            read_only: self.read_only,
        });
        if self.transient { StoreError::Unavailable(cause) } else { StoreError::Internal(cause) }
    }
}

impl From<StoreError> for BatchFailed {
    fn from(e: StoreError) -> Self {
        let message = match &e {
            StoreError::Unavailable(cause) | StoreError::Internal(cause) => cause.to_string(),
            other => other.to_string(),
        };
        BatchFailed { message, transient: matches!(e, StoreError::Unavailable(_)), read_only: is_read_only(&e) }
    }
}

impl From<tokio_postgres::Error> for BatchFailed {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::from(e).into()
    }
}
