//! What the SQS SDK's errors mean to the queue: a receipt that no longer holds its message, an
//! outage (worth waiting for), or a refusal.

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};

use super::QueueError;

pub(super) fn backend_error<E>(
    operation: &'static str,
    error: &aws_sdk_sqs::error::SdkError<E>,
) -> QueueError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let receipt_gone = matches!(
        error.code(),
        Some(
            "ReceiptHandleIsInvalid"
                | "AWS.SimpleQueueService.ReceiptHandleIsInvalid"
                | "MessageNotInflight"
                | "AWS.SimpleQueueService.MessageNotInflight"
        )
    );
    if receipt_gone {
        return QueueError::ReceiptInvalid;
    }
    let detail = DisplayErrorContext(error).to_string();
    if is_outage(error) {
        QueueError::Unreachable {
            backend: "sqs",
            operation,
            detail,
        }
    } else {
        QueueError::Backend {
            backend: "sqs",
            operation,
            detail,
        }
    }
}

/// Whether an SDK error is an outage: the request never got an answer (connection refused or
/// reset, timeout, a garbled response) or the service said it is unavailable or throttling.
fn is_outage<E: ProvideErrorMetadata>(error: &aws_sdk_sqs::error::SdkError<E>) -> bool {
    use aws_sdk_sqs::error::SdkError;
    match error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => {
            e.raw().status().as_u16() >= 500
                || matches!(
                    error.code(),
                    Some(
                        "ServiceUnavailable"
                            | "InternalError"
                            | "InternalFailure"
                            | "ThrottlingException"
                            | "RequestThrottled"
                    )
                )
        }
        _ => false,
    }
}

pub(super) fn build_error(operation: &'static str, error: impl std::fmt::Display) -> QueueError {
    QueueError::Backend {
        backend: "sqs",
        operation,
        detail: error.to_string(),
    }
}
