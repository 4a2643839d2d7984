//! The services a process knows, by platform name.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::http::HttpClients;
use crate::service::{DynService, IntegrationService};

/// The integrations a process knows, and the HTTP clients they share (connections and
/// per-credential pacing live for the life of the process).
#[derive(Default, Clone)]
pub struct Registry {
    services: BTreeMap<&'static str, Arc<dyn DynService>>,
    http: Arc<HttpClients>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("platform `{0}` is registered twice")]
    Duplicate(&'static str),
    #[error("unknown platform `{unknown}`; known platforms: {}", .known.join(", "))]
    UnknownPlatform { unknown: String, known: Vec<String> },
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(
        &mut self,
        service: impl IntegrationService,
    ) -> Result<&mut Self, RegistryError> {
        self.register_arc(Arc::new(service))
    }

    pub fn register_arc(
        &mut self,
        service: Arc<dyn DynService>,
    ) -> Result<&mut Self, RegistryError> {
        let platform = service.platform();
        if self.services.contains_key(platform) {
            return Err(RegistryError::Duplicate(platform));
        }
        self.services.insert(platform, service);
        Ok(self)
    }

    /// The service of a platform, or an error that lists the known ones.
    pub fn get(&self, platform: &str) -> Result<Arc<dyn DynService>, RegistryError> {
        self.services
            .get(platform)
            .cloned()
            .ok_or_else(|| RegistryError::UnknownPlatform {
                unknown: platform.to_owned(),
                known: self.platforms().map(str::to_owned).collect(),
            })
    }

    pub fn platforms(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.services.keys().copied()
    }

    pub fn services(&self) -> impl Iterator<Item = &Arc<dyn DynService>> + '_ {
        self.services.values()
    }

    /// The HTTP clients every integration of this registry shares.
    /// Holds every HTTP client of this registry's integrations to `policy` (body cap, address
    /// guard). Call before processing starts.
    pub fn set_http_policy(&mut self, policy: crate::http::HttpPolicy) {
        self.http = Arc::new(HttpClients::with_policy(policy));
    }

    pub fn http(&self) -> &Arc<HttpClients> {
        &self.http
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.services.keys()).finish()
    }
}
