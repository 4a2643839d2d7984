//! The platforms taking part in the onboarding benchmark, one module each.

mod discord;
mod discourse;
mod example_forum;
mod slack;
mod stackoverflow;

use super::onboarding::BenchPlatform;

/// Every platform with an onboarding benchmark.
pub fn all() -> Vec<Box<dyn BenchPlatform>> {
    vec![
        Box::new(example_forum::Forum),
        Box::new(discord::Discord),
        Box::new(slack::Slack),
        Box::new(discourse::Discourse),
        Box::new(stackoverflow::StackOverflow),
    ]
}
