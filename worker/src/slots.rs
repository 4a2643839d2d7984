//! How many messages the worker handles at once: between the configured concurrency and its
//! maximum, following the queue. A receive that comes back full says there is a backlog, and the
//! worker doubles its slots (up to the maximum); a receive that comes back empty says there is
//! none, and it halves them (down to the configured concurrency). Most of a check's time is spent
//! waiting on the platform, so a backlog of checks is cleared by waiting on more at once.
//!
//! On a backlog, a receive also waits a moment for slots to free up, so it takes messages ten at
//! a time (one receive for ten checks) rather than one by one as single slots free up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

pub struct Slots {
    semaphore: Arc<Semaphore>,
    min: usize,
    max: usize,
    /// Slots in existence (taken or free).
    current: usize,
    /// The last receive came back full: the queue has a backlog.
    backlog: bool,
}

impl Slots {
    pub fn new(min: usize, max: usize) -> Self {
        let min = min.max(1);
        let max = max.max(min);
        Self {
            semaphore: Arc::new(Semaphore::new(min)),
            min,
            max,
            current: min,
            backlog: false,
        }
    }

    /// Slots in existence now.
    #[cfg(test)]
    pub fn current(&self) -> usize {
        self.current
    }

    /// Waits for a free slot, then takes as many more as are free, up to `batch` in all (and at
    /// most every slot there is); on a backlog, waits up to `gather` for more slots to free up.
    pub async fn take(
        &self,
        batch: usize,
        gather: Duration,
    ) -> Result<Vec<OwnedSemaphorePermit>, AcquireError> {
        let batch = batch.min(self.current).max(1);
        let mut permits = vec![self.semaphore.clone().acquire_owned().await?];
        while permits.len() < batch {
            match self.semaphore.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        if self.backlog && permits.len() < batch {
            let until = tokio::time::Instant::now() + gather;
            while permits.len() < batch {
                match tokio::time::timeout_at(until, self.semaphore.clone().acquire_owned()).await {
                    Ok(permit) => permits.push(permit?),
                    Err(_) => break,
                }
            }
        }
        Ok(permits)
    }

    /// A receive asked for `asked` messages and got `got`: grow on a backlog, shrink when idle.
    /// Returns the new number of slots if it changed.
    pub fn follow(&mut self, asked: usize, got: usize) -> Option<usize> {
        let before = self.current;
        self.backlog = asked > 0 && got >= asked;
        if self.backlog && self.current < self.max {
            let add = self.current.min(self.max - self.current);
            self.semaphore.add_permits(add);
            self.current += add;
        } else if got == 0 && self.current > self.min {
            // only free slots can go; taken ones stay until their message is done
            let surplus = self.current - (self.current / 2).max(self.min);
            let gone = self.semaphore.forget_permits(surplus);
            self.current -= gone;
        }
        (self.current != before).then_some(self.current)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_double_on_a_backlog_up_to_the_maximum_and_halve_when_idle() {
        let mut slots = Slots::new(4, 16);
        let taken = slots.take(10, Duration::ZERO).await.unwrap();
        assert_eq!(taken.len(), 4, "a batch takes only the free slots");
        assert_eq!(slots.follow(4, 4), Some(8));
        assert_eq!(slots.follow(4, 4), Some(16));
        assert_eq!(slots.follow(10, 10), None, "16 is the maximum");
        assert_eq!(
            slots.follow(10, 3),
            None,
            "a partial receive changes nothing"
        );
        drop(taken);
        assert_eq!(slots.follow(10, 0), Some(8));
        assert_eq!(slots.follow(10, 0), Some(4));
        assert_eq!(
            slots.follow(10, 0),
            None,
            "never below the configured concurrency"
        );
        assert_eq!(slots.take(10, Duration::ZERO).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn slots_in_use_are_not_taken_away() {
        let mut slots = Slots::new(2, 8);
        slots.follow(2, 2);
        slots.follow(4, 4);
        assert_eq!(slots.current(), 8);
        let taken = slots.take(10, Duration::ZERO).await.unwrap();
        assert_eq!(taken.len(), 8);
        assert_eq!(
            slots.follow(10, 0),
            None,
            "every slot is taken: none can go"
        );
        drop(taken);
        assert_eq!(slots.follow(10, 0), Some(4));
    }

    #[tokio::test]
    async fn on_a_backlog_a_take_gathers_slots_as_they_free_up() {
        let mut slots = Slots::new(2, 2);
        let mut taken = slots.take(10, Duration::ZERO).await.unwrap();
        assert_eq!(slots.follow(2, 2), None, "at the maximum already");
        let second = taken.pop().unwrap();
        let first = taken.pop().unwrap();
        let slots = Arc::new(slots);
        let gathering = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.take(10, Duration::from_secs(3600)).await })
        };
        drop(first);
        drop(second);
        let gathered = gathering.await.unwrap().unwrap();
        assert_eq!(gathered.len(), 2, "both freed slots, taken together");
    }

    #[tokio::test]
    async fn without_a_backlog_a_take_does_not_wait_for_more() {
        let mut slots = Slots::new(2, 2);
        assert_eq!(slots.follow(2, 1), None);
        let held = slots.take(1, Duration::ZERO).await.unwrap();
        let taken = slots.take(10, Duration::from_secs(3600)).await.unwrap();
        assert_eq!((held.len(), taken.len()), (1, 1));
    }
}
