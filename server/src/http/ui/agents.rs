//! The agents' server functions: an owner's own agents and the admins' list of every agent.

use app::api::{AgentItem, AgentRef, AgentsBackend, AppError, NewAgent};
use async_trait::async_trait;
use axum::http::request::Parts;

use std::collections::HashMap;

use super::{agent_status, UiBackend};

/// An agent's parent as the lists show it: its id, and its name when the list holds it.
fn parent_ref(parent_id: Option<String>, names: &HashMap<String, String>) -> Option<AgentRef> {
    parent_id.map(|id| AgentRef {
        name: names.get(&id).cloned(),
        id,
    })
}

#[async_trait]
impl AgentsBackend for UiBackend {
    async fn my_agents(&self, req: &Parts) -> Result<Vec<AgentItem>, AppError> {
        let who = self.who(req).await?;
        let list = self.core.my_agents(&who).await?;
        // Parents are named only when they are among this person's own agents.
        let names: HashMap<String, String> = list
            .iter()
            .map(|a| (a.id.clone(), a.name.clone()))
            .collect();
        Ok(list
            .into_iter()
            .map(|a| AgentItem {
                parent: parent_ref(a.parent_id, &names),
                id: a.id,
                name: a.name,
                status: agent_status(a.status),
                key_type: a.key_type,
                created_at: a.created_at,
                last_seen_at: a.last_seen_at,
                callback_url: a.callback_url,
            })
            .collect())
    }

    async fn set_agent_callback(
        &self,
        req: &Parts,
        id: String,
        url: String,
    ) -> Result<Option<String>, AppError> {
        let who = self.who(req).await?;
        let url = Some(url.trim()).filter(|u| !u.is_empty());
        Ok(self.core.set_agent_callback(&who, &id, url).await?.url)
    }

    async fn create_agent(&self, req: &Parts, name: String) -> Result<NewAgent, AppError> {
        let who = self.who(req).await?;
        let actor = format!("user:{}", who.person.id);
        let created = self
            .core
            .create_agent(name.trim(), &who.person.email, None, &actor)
            .await?;
        Ok(NewAgent {
            id: created.id,
            name: created.name,
            api_key: created
                .api_key
                .map(|k| k.expose().to_string())
                .unwrap_or_default(),
        })
    }

    async fn set_agent_active(
        &self,
        req: &Parts,
        id: String,
        active: bool,
    ) -> Result<(), AppError> {
        let who = self.who(req).await?;
        Ok(self.core.set_agent_active(&who, &id, active).await?)
    }

    async fn set_agent_parent(
        &self,
        req: &Parts,
        id: String,
        parent: String,
    ) -> Result<Option<String>, AppError> {
        let who = self.who(req).await?;
        let parent = Some(parent.trim()).filter(|p| !p.is_empty());
        Ok(self
            .core
            .set_agent_parent(&who, &id, parent)
            .await?
            .parent_id)
    }

    async fn admin_agents(&self, req: &Parts) -> Result<Vec<app::api::AdminAgentItem>, AppError> {
        let who = self.who(req).await?;
        let list = self.core.all_agents(&who).await?;
        let names: HashMap<String, String> = list
            .iter()
            .map(|a| (a.id.clone(), a.name.clone()))
            .collect();
        Ok(list
            .into_iter()
            .map(|a| app::api::AdminAgentItem {
                parent: parent_ref(a.parent_id, &names),
                id: a.id,
                name: a.name,
                owner_email: a.owner_email,
                owner_name: a.owner_name,
                status: agent_status(a.status),
                key_type: a.key_type,
                jkt: a.jwk_thumbprint,
                created_at: a.created_at,
                last_seen_at: a.last_seen_at,
                pending_requests: a.pending_requests,
                callback_url: a.callback_url,
            })
            .collect())
    }

    async fn admin_agent_status(
        &self,
        req: &Parts,
        id: String,
        active: bool,
    ) -> Result<app::api::AgentStatusOut, AppError> {
        let who = self.who(req).await?;
        let r = self.core.admin_set_agent_status(&who, &id, active).await?;
        Ok(app::api::AgentStatusOut {
            status: agent_status(r.status),
            changed: r.changed,
            cancelled_requests: r.cancelled_requests as u64,
            revoked_grants: r.revoked_grants as u64,
        })
    }

    async fn admin_rotate_agent_key(
        &self,
        req: &Parts,
        id: String,
    ) -> Result<app::api::RotatedKeyOut, AppError> {
        let who = self.who(req).await?;
        let r = self.core.rotate_agent_key(&who, &id).await?;
        Ok(app::api::RotatedKeyOut {
            id: r.agent_id,
            api_key: r.api_key.expose().to_string(),
            revoked_grants: r.revoked_grants as u64,
        })
    }

    async fn admin_set_agent_key(
        &self,
        req: &Parts,
        id: String,
        jwk: String,
    ) -> Result<app::api::AgentKeyOut, AppError> {
        let who = self.who(req).await?;
        let r = self.core.set_agent_public_key(&who, &id, &jwk).await?;
        Ok(app::api::AgentKeyOut {
            id: r.agent_id,
            jkt: r.jkt,
            revoked_grants: r.revoked_grants as u64,
        })
    }
}
