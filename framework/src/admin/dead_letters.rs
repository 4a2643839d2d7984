//! The dead-letter queue for operators: list with reasons, redrive, discard. The same functions
//! serve the admin API and the dashboard, on either queue backend.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::AdminError;
use crate::queue::{DeadLetter, Queue};

/// A message in the dead-letter queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetterView {
    pub id: String,
    /// The message as it was sent (messages never carry credentials).
    pub body: String,
    /// Why it is there; SQS's own redrive records none.
    pub reason: Option<String>,
    pub receive_count: Option<u32>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        Self {
            id: d.id,
            body: d.body,
            reason: d.reason,
            receive_count: d.receive_count,
            dead_lettered_at: d.dead_lettered_at,
        }
    }
}

/// Up to `max` dead letters, oldest first.
pub async fn list(queue: &dyn Queue, max: usize) -> Result<Vec<DeadLetterView>, AdminError> {
    Ok(queue
        .peek_dead_letters(max)
        .await?
        .into_iter()
        .map(DeadLetterView::from)
        .collect())
}

/// Sends the dead letter to the workers again.
pub async fn redrive(queue: &dyn Queue, id: &str) -> Result<(), AdminError> {
    if queue.redrive_dead_letter(id).await? {
        Ok(())
    } else {
        Err(AdminError::UnknownDeadLetter(id.to_owned()))
    }
}

/// Deletes the dead letter for good.
pub async fn discard(queue: &dyn Queue, id: &str) -> Result<(), AdminError> {
    if queue.discard_dead_letter(id).await? {
        Ok(())
    } else {
        Err(AdminError::UnknownDeadLetter(id.to_owned()))
    }
}
