//! Agents: an owner's own (register, suspend, resume) and the admins' list of every agent with
//! its credentials.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::{backend, with_status};
use super::{AgentStatus, AppError};

/// One of the person's agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentItem {
    /// Agent id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Whether it may ask.
    pub status: AgentStatus,
    /// `api_key` or `public_key`.
    pub key_type: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of its last request, if any.
    pub last_seen_at: Option<i64>,
    /// The URL called (a signed POST) when one of its requests is decided, if any.
    pub callback_url: Option<String>,
    /// The agent it is registered as a sub-agent of, if any.
    #[serde(default)]
    pub parent: Option<AgentRef>,
}

/// Another agent, by id and (when the reader may know it) name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRef {
    /// Agent id.
    pub id: String,
    /// Its name, when it is one the reader can see.
    pub name: Option<String>,
}

/// A newly registered agent; the key is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAgent {
    /// Agent id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The API key: shown now, never again.
    pub api_key: String,
}

/// One agent in the admins' list of every agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAgentItem {
    /// Agent id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Its owner's e-mail.
    pub owner_email: String,
    /// Its owner's display name.
    pub owner_name: String,
    /// Whether it may ask.
    pub status: AgentStatus,
    /// `api_key` or `public_key`.
    pub key_type: String,
    /// RFC 7638 thumbprint of its public key (key-bound agents).
    pub jkt: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of its last request, if any.
    pub last_seen_at: Option<i64>,
    /// Its requests waiting for people.
    pub pending_requests: i64,
    /// The URL called (a signed POST) when one of its requests is decided, if any.
    pub callback_url: Option<String>,
    /// The agent it is registered as a sub-agent of, if any.
    #[serde(default)]
    pub parent: Option<AgentRef>,
}

/// What suspending or resuming an agent did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatusOut {
    /// Its status now.
    pub status: AgentStatus,
    /// False when it already had that status.
    pub changed: bool,
    /// Pending requests cancelled.
    pub cancelled_requests: u64,
    /// Outstanding grants revoked.
    pub revoked_grants: u64,
}

/// An agent's new API key, shown once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatedKeyOut {
    /// Agent id.
    pub id: String,
    /// The new key: shown now, never again. The old one no longer works.
    pub api_key: String,
    /// Unredeemed grants revoked with the change.
    pub revoked_grants: u64,
}

/// Never prints the key (it could end up in a log).
impl std::fmt::Debug for RotatedKeyOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedKeyOut")
            .field("id", &self.id)
            .field("api_key", &"<redacted>")
            .field("revoked_grants", &self.revoked_grants)
            .finish()
    }
}

/// An agent's newly registered public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentKeyOut {
    /// Agent id.
    pub id: String,
    /// RFC 7638 thumbprint of the key.
    pub jkt: String,
    /// Unredeemed grants revoked with the change.
    pub revoked_grants: u64,
}

/// The agents' server functions, served by the server crate.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait AgentsBackend: Send + Sync + 'static {
    /// This person's agents.
    async fn my_agents(&self, req: &http::request::Parts) -> Result<Vec<AgentItem>, AppError>;
    /// Registers an agent owned by this person.
    async fn create_agent(
        &self,
        req: &http::request::Parts,
        name: String,
    ) -> Result<NewAgent, AppError>;
    /// Suspends or resumes one of this person's agents.
    async fn set_agent_active(
        &self,
        req: &http::request::Parts,
        id: String,
        active: bool,
    ) -> Result<(), AppError>;
    /// Sets (a URL) or clears (an empty string) the callback URL of one of this person's agents
    /// (admins: any agent); returns the URL as stored.
    async fn set_agent_callback(
        &self,
        req: &http::request::Parts,
        id: String,
        url: String,
    ) -> Result<Option<String>, AppError>;
    /// Registers one of this person's agents as a sub-agent of another of theirs (admins: any
    /// two agents), or clears that (an empty `parent`); returns the parent as stored.
    async fn set_agent_parent(
        &self,
        req: &http::request::Parts,
        id: String,
        parent: String,
    ) -> Result<Option<String>, AppError>;
    /// Every agent with its owner (admins only).
    async fn admin_agents(
        &self,
        req: &http::request::Parts,
    ) -> Result<Vec<AdminAgentItem>, AppError>;
    /// Suspends or resumes any agent (admins only).
    async fn admin_agent_status(
        &self,
        req: &http::request::Parts,
        id: String,
        active: bool,
    ) -> Result<AgentStatusOut, AppError>;
    /// Gives an agent a new API key, retiring its old credential (admins only).
    async fn admin_rotate_agent_key(
        &self,
        req: &http::request::Parts,
        id: String,
    ) -> Result<RotatedKeyOut, AppError>;
    /// Registers or replaces an agent's Ed25519 public key, retiring its API key (admins only).
    async fn admin_set_agent_key(
        &self,
        req: &http::request::Parts,
        id: String,
        jwk: String,
    ) -> Result<AgentKeyOut, AppError>;
}

/// My agents.
#[server(prefix = "/api/app", endpoint = "my_agents")]
pub async fn my_agents() -> Result<Vec<AgentItem>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.my_agents(&p).await)
}

/// Registers an agent. Posted as a plain form (no wasm yet), its key is handed to the agents
/// page the post returns to ([`registered_agent`]).
#[server(prefix = "/api/app", endpoint = "create_agent")]
pub async fn create_agent(name: String) -> Result<NewAgent, AppError> {
    let (b, p) = backend().await?;
    let created = with_status(b.create_agent(&p, name).await)?;
    super::hand_over(REGISTERED_AGENT, "/agents", &created);
    Ok(created)
}

/// The cookie that hands a new agent's key from a plain form post to the agents page.
#[cfg(feature = "ssr")]
const REGISTERED_AGENT: &str = "countersign_registered_agent";

/// The agent a plain form post just registered, shown once by the page it returns to (`None`
/// otherwise).
#[server(prefix = "/api/app", endpoint = "registered_agent")]
pub async fn registered_agent() -> Result<Option<NewAgent>, AppError> {
    Ok(super::take_handed_over(REGISTERED_AGENT, "/agents"))
}

/// Suspends (`active = false`) or resumes an agent.
#[server(prefix = "/api/app", endpoint = "set_agent_active")]
pub async fn set_agent_active(id: String, active: bool) -> Result<(), AppError> {
    let (b, p) = backend().await?;
    with_status(b.set_agent_active(&p, id, active).await)
}

/// Sets the callback URL of an agent (an empty `url` clears it): Countersign then POSTs a signed
/// notice there whenever one of its requests is decided.
#[server(prefix = "/api/app", endpoint = "set_agent_callback")]
pub async fn set_agent_callback(id: String, url: String) -> Result<Option<String>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.set_agent_callback(&p, id, url).await)
}

/// Registers an agent as a sub-agent of another (`parent`, an agent id; empty clears it).
/// Owners may do this between two agents they own; admins between any two. Suspending the
/// parent then suspends the sub-agent too.
#[server(prefix = "/api/app", endpoint = "set_agent_parent")]
pub async fn set_agent_parent(id: String, parent: String) -> Result<Option<String>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.set_agent_parent(&p, id, parent).await)
}

/// Every agent with its owner, status, key type and last activity (admins only).
#[server(prefix = "/api/app", endpoint = "admin/agents")]
pub async fn admin_agents() -> Result<Vec<AdminAgentItem>, AppError> {
    let (b, p) = backend().await?;
    with_status(b.admin_agents(&p).await)
}

/// Suspends (`active = false`) or resumes any agent (admins only).
#[server(prefix = "/api/app", endpoint = "admin/agent_status")]
pub async fn admin_agent_status(id: String, active: bool) -> Result<AgentStatusOut, AppError> {
    let (b, p) = backend().await?;
    with_status(b.admin_agent_status(&p, id, active).await)
}

/// Gives an agent a new API key, shown once; the old credential stops working (admins only).
#[server(prefix = "/api/app", endpoint = "admin/rotate_agent_key")]
pub async fn admin_rotate_agent_key(id: String) -> Result<RotatedKeyOut, AppError> {
    let (b, p) = backend().await?;
    with_status(b.admin_rotate_agent_key(&p, id).await)
}

/// Registers or replaces an agent's Ed25519 public key (a JWK); its API key stops working
/// (admins only).
#[server(prefix = "/api/app", endpoint = "admin/set_agent_key")]
pub async fn admin_set_agent_key(id: String, jwk: String) -> Result<AgentKeyOut, AppError> {
    let (b, p) = backend().await?;
    with_status(b.admin_set_agent_key(&p, id, jwk).await)
}
