//! Tributary's integrations, one module per platform.

pub mod devto;
pub mod discord;
pub mod discourse;
pub mod example_forum;
pub mod github;
pub mod hackernews;
pub mod slack;
pub mod stackoverflow;

use tributary::Registry;
use tributary::registry::RegistryError;

pub use devto::DevtoIntegration;
pub use example_forum::ExampleForumIntegration;
pub use github::GithubIntegration;
pub use hackernews::HackerNewsIntegration;

/// Registers every integration of this crate.
pub fn register_all(registry: &mut Registry) -> Result<(), RegistryError> {
    registry.register(ExampleForumIntegration::new())?;
    registry.register(DevtoIntegration::new())?;
    registry.register(GithubIntegration::new())?;
    registry.register(HackerNewsIntegration::new())?;
    registry.register(discord::DiscordIntegration)?;
    registry.register(slack::SlackIntegration::default())?;
    registry.register(discourse::DiscourseIntegration)?;
    registry.register(stackoverflow::StackoverflowIntegration)?;
    Ok(())
}

/// A registry with every integration of this crate.
pub fn registry() -> Result<Registry, RegistryError> {
    let mut registry = Registry::new();
    register_all(&mut registry)?;
    Ok(registry)
}
