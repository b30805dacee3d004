//! The guards' server functions.

use app::api::{AppError, GuardSettings, GuardsBackend};
use async_trait::async_trait;
use axum::http::request::Parts;

use super::UiBackend;
use crate::domain::guards::Guards;

#[async_trait]
impl GuardsBackend for UiBackend {
    async fn guards(&self, req: &Parts) -> Result<GuardSettings, AppError> {
        let who = self.who(req).await?;
        Ok(to_settings(self.core.guards_seen_by(&who).await?))
    }

    async fn set_guards(&self, req: &Parts, g: GuardSettings) -> Result<GuardSettings, AppError> {
        let who = self.who(req).await?;
        let new = Guards {
            max_pending_per_agent: g.max_pending_per_agent,
            prompts_per_approver_per_minute: g.prompts_per_approver_per_minute,
            deny_cooldown_seconds: g.deny_cooldown_seconds,
            approve_delay_ms: g.approve_delay_ms,
            collapse_identical: g.collapse_identical,
        };
        Ok(to_settings(self.core.set_guards(&who, new).await?))
    }
}

fn to_settings(g: Guards) -> GuardSettings {
    GuardSettings {
        max_pending_per_agent: g.max_pending_per_agent,
        prompts_per_approver_per_minute: g.prompts_per_approver_per_minute,
        deny_cooldown_seconds: g.deny_cooldown_seconds,
        approve_delay_ms: g.approve_delay_ms,
        collapse_identical: g.collapse_identical,
    }
}
