//! Slack's users, looked up once per run: messages carry only a user id, and a member is stored
//! with everything known the first time it is written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tributary::IntegrationError;

use super::api::User;

/// A run's lookups are dropped this long after its last one.
const KEEP: Duration = Duration::from_secs(3600);

type Slot = Arc<OnceCell<Option<User>>>;
/// A run's lookups: when it last asked, and its users.
type RunUsers = (Instant, HashMap<String, Slot>);

/// The users looked up by each run of this process.
#[derive(Debug, Default)]
pub(super) struct Directory {
    runs: Mutex<HashMap<String, RunUsers>>,
}

impl Directory {
    fn slot(&self, run: &str, user: &str) -> Slot {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        runs.retain(|_, (touched, _)| now.duration_since(*touched) < KEEP);
        let (touched, users) = runs
            .entry(run.to_owned())
            .or_insert_with(|| (now, HashMap::new()));
        *touched = now;
        users.entry(user.to_owned()).or_default().clone()
    }

    /// The user `id` for `run`: `fetch` is called once per run and user, even by streams
    /// running at the same time (a failed lookup is tried again by the next caller).
    pub async fn get<F, Fut>(
        &self,
        run: &str,
        id: &str,
        fetch: F,
    ) -> Result<Option<User>, IntegrationError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<User>, IntegrationError>>,
    {
        let slot = self.slot(run, id);
        slot.get_or_try_init(fetch).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            name: id.to_lowercase(),
            real_name: None,
            deleted: None,
            is_bot: None,
            profile: None,
        }
    }

    #[tokio::test]
    async fn a_user_is_fetched_once_per_run() {
        let directory = Directory::default();
        let calls = AtomicU32::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Some(user("U1")))
        };
        let (a, b) = tokio::join!(
            directory.get("run-1", "U1", fetch),
            directory.get("run-1", "U1", fetch)
        );
        assert_eq!(a.unwrap(), b.unwrap());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        directory.get("run-2", "U1", fetch).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "another run asks again");
        let failed = directory
            .get("run-3", "U2", || async {
                Err(IntegrationError::retryable("down"))
            })
            .await;
        assert!(failed.is_err());
        let again = directory
            .get("run-3", "U2", || async { Ok(Some(user("U2"))) })
            .await
            .unwrap();
        assert_eq!(again.unwrap().id, "U2", "a failure is not kept");
    }
}
