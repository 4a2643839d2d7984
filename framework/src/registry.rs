//! The services a process knows, by platform name.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::service::IntegrationService;

#[derive(Default, Clone)]
pub struct Registry {
    services: BTreeMap<&'static str, Arc<dyn IntegrationService>>,
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
        service: Arc<dyn IntegrationService>,
    ) -> Result<&mut Self, RegistryError> {
        let platform = service.platform();
        if self.services.contains_key(platform) {
            return Err(RegistryError::Duplicate(platform));
        }
        self.services.insert(platform, service);
        Ok(self)
    }

    /// The service of a platform, or an error that lists the known ones.
    pub fn get(&self, platform: &str) -> Result<Arc<dyn IntegrationService>, RegistryError> {
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

    pub fn services(&self) -> impl Iterator<Item = &Arc<dyn IntegrationService>> + '_ {
        self.services.values()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.services.keys()).finish()
    }
}
