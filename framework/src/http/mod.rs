//! The HTTP toolkit every integration uses: one client per integration with its base URL,
//! timeouts and user agent; responses classified into [`IntegrationError`] kinds; the waits
//! platforms announce read from their headers. Tokens never appear in errors.

mod client;
mod waits;

pub use client::{HttpClient, HttpConfig, HttpResponse};
pub use waits::{RateLimitInfo, WaitCaps, announced_wait};
