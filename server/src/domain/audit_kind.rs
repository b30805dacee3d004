//! Every kind of event Countersign writes on the audit chain, as one enum.
//!
//! Stored (and hashed) as the same dotted text as always, e.g. `request.created`. The chain's
//! read side keeps the text ([`crate::domain::audit::AuditEvent::kind`]): a chain is verified
//! and exported as it was written, whatever version wrote it; the write side takes this type, so
//! a misspelt kind no longer compiles.

use super::lifecycle::stored_as_text;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
pub enum EventKind {
    /// An agent asked; policy decided what happens next.
    #[strum(serialize = "request.created")]
    RequestCreated,
    /// One person approved (quorum counts these).
    #[strum(serialize = "approval.recorded")]
    ApprovalRecorded,
    /// The request was approved (by policy or its quorum).
    #[strum(serialize = "request.approved")]
    RequestApproved,
    /// The request was denied (by policy or an approver).
    #[strum(serialize = "request.denied")]
    RequestDenied,
    /// The request was withdrawn or cancelled by the kill switch.
    #[strum(serialize = "request.cancelled")]
    RequestCancelled,
    /// The request's deadline passed.
    #[strum(serialize = "request.expired")]
    RequestExpired,
    /// A grant was issued.
    #[strum(serialize = "grant.issued")]
    GrantIssued,
    /// A grant was redeemed.
    #[strum(serialize = "grant.redeemed")]
    GrantRedeemed,
    /// The agent reported what happened with a redeemed grant.
    #[strum(serialize = "grant.outcome")]
    GrantOutcome,
    /// A grant was revoked.
    #[strum(serialize = "grant.revoked")]
    GrantRevoked,
    /// A grant's lifetime ran out unused.
    #[strum(serialize = "grant.expired")]
    GrantExpired,
    /// An agent was registered.
    #[strum(serialize = "agent.created")]
    AgentCreated,
    /// An agent was suspended (the kill switch).
    #[strum(serialize = "agent.suspended")]
    AgentSuspended,
    /// An agent was resumed.
    #[strum(serialize = "agent.resumed")]
    AgentResumed,
    /// An agent's API key was replaced.
    #[strum(serialize = "agent.key_rotated")]
    AgentKeyRotated,
    /// An agent's public key was set or replaced.
    #[strum(serialize = "agent.public_key_set")]
    AgentPublicKeySet,
    /// An agent was registered as a sub-agent of another agent, or no longer is one (the
    /// parent, and the previous one, in its data).
    #[strum(serialize = "agent.parent_set")]
    AgentParentSet,
    /// An agent's callback URL was registered or replaced.
    #[strum(serialize = "agent.callback_set")]
    AgentCallbackSet,
    /// An agent's callback URL was removed.
    #[strum(serialize = "agent.callback_cleared")]
    AgentCallbackCleared,
    /// A request's callback reached the agent's endpoint.
    #[strum(serialize = "callback.delivered")]
    CallbackDelivered,
    /// A request's callback was given up on (every attempt failed, or the URL was refused).
    #[strum(serialize = "callback.failed")]
    CallbackFailed,
    /// An admin configured a credential provider (its name, kind, settings and the secret's
    /// fingerprint; never the secret).
    #[strum(serialize = "credential_provider.added")]
    CredentialProviderAdded,
    /// An admin removed a credential provider.
    #[strum(serialize = "credential_provider.removed")]
    CredentialProviderRemoved,
    /// A grant was redeemed for a task-scoped credential: which provider, which login, until
    /// when.
    #[strum(serialize = "credential.issued")]
    CredentialIssued,
    /// A released credential's task ended (outcome reported, time up, grant revoked, agent
    /// suspended or its key changed): its revocation begins.
    #[strum(serialize = "credential.revoking")]
    CredentialRevoking,
    /// One step of a revocation was done downstream.
    #[strum(serialize = "credential.revoke_step")]
    CredentialRevokeStep,
    /// A released credential no longer exists downstream.
    #[strum(serialize = "credential.revoked")]
    CredentialRevoked,
    /// The reaper removed a downstream login of ours that no live credential accounts for.
    #[strum(serialize = "credential.reaped")]
    CredentialReaped,
    /// The gateway forwarded an approved call to its upstream, with the provider's secret.
    #[strum(serialize = "gateway.forwarded")]
    GatewayForwarded,
    /// An approver's passkey ceremony also approved a bounded pattern of later requests.
    #[strum(serialize = "standing.created")]
    StandingCreated,
    /// A request inside a standing approval's pattern was approved by using one of its uses.
    #[strum(serialize = "standing.used")]
    StandingUsed,
    /// A standing approval was ended before its time (by a person, the kill switch, a key
    /// change or a policy change).
    #[strum(serialize = "standing.revoked")]
    StandingRevoked,
    /// Someone was invited.
    #[strum(serialize = "user.invited")]
    UserInvited,
    /// An invited person enrolled their first passkey.
    #[strum(serialize = "user.enrolled")]
    UserEnrolled,
    /// A person signed in.
    #[strum(serialize = "user.signed_in")]
    UserSignedIn,
    /// An admin changed a person's role or groups.
    #[strum(serialize = "user.updated")]
    UserUpdated,
    /// An admin deactivated a person.
    #[strum(serialize = "user.deactivated")]
    UserDeactivated,
    /// An admin reactivated a person.
    #[strum(serialize = "user.reactivated")]
    UserReactivated,
    /// A person added a passkey.
    #[strum(serialize = "passkey.added")]
    PasskeyAdded,
    /// A person renamed a passkey.
    #[strum(serialize = "passkey.renamed")]
    PasskeyRenamed,
    /// A person removed a passkey.
    #[strum(serialize = "passkey.removed")]
    PasskeyRemoved,
    /// A new policy version took effect.
    #[strum(serialize = "policy.applied")]
    PolicyApplied,
    /// An admin changed the guards.
    #[strum(serialize = "settings.changed")]
    SettingsChanged,
}

stored_as_text!(EventKind, "audit event kind");

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_text() {
        for k in EventKind::VARIANTS {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(*k));
        }
        assert_eq!(EventKind::VARIANTS.len(), 43);
        assert_eq!(EventKind::GrantRedeemed.as_str(), "grant.redeemed");
    }
}
