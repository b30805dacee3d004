//! The guards against approval fatigue, as admins see and set them.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::AppError;
#[cfg(feature = "ssr")]
use super::{backend, with_status};

/// The guards against approval fatigue, as admins set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardSettings {
    /// Requests one agent may have waiting for people.
    pub max_pending_per_agent: u32,
    /// Mails one approver gets per minute at most.
    pub prompts_per_approver_per_minute: u32,
    /// Seconds a denied action stays refused for the agent that asked (0: off).
    pub deny_cooldown_seconds: u32,
    /// Milliseconds from opening a request's page to being able to approve (0: off).
    pub approve_delay_ms: u32,
    /// Whether identical pending requests collapse into one. Absent means no: an unticked
    /// checkbox is left out of a posted form.
    #[serde(default)]
    pub collapse_identical: bool,
}

/// The guards' server functions, served by the server crate.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait GuardsBackend: Send + Sync + 'static {
    /// The guards in force (admins only).
    async fn guards(&self, req: &http::request::Parts) -> Result<GuardSettings, AppError>;
    /// Changes the guards (admins only).
    async fn set_guards(
        &self,
        req: &http::request::Parts,
        guards: GuardSettings,
    ) -> Result<GuardSettings, AppError>;
}

/// The guards in force (admins only).
#[server(prefix = "/api/app", endpoint = "admin/guards")]
pub async fn guards() -> Result<GuardSettings, AppError> {
    let (b, p) = backend().await?;
    with_status(b.guards(&p).await)
}

/// Changes the guards (admins only).
#[server(prefix = "/api/app", endpoint = "admin/set_guards")]
pub async fn set_guards(guards: GuardSettings) -> Result<GuardSettings, AppError> {
    let (b, p) = backend().await?;
    with_status(b.set_guards(&p, guards).await)
}
