//! How one request's audit events read as a timeline: a title, who caused each event in
//! words, and the facts a reader needs from its data (which field means what).
//!
//! Pure: the names of people, passkeys and agents are looked up by the caller and handed in as
//! [`Names`]. It only describes; the evidence itself is always shown and exported exactly as
//! stored, so a reader can check it against the chain.

use super::audit_kind::EventKind;
use std::collections::HashMap;

use serde_json::Value;

use super::audit::AuditEvent;
use crate::clock::Millis;

/// A labelled value on a timeline step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// Stable name, e.g. `display_hash` (tests and styles key on it).
    pub key: &'static str,
    /// What a person reads.
    pub label: &'static str,
    /// The value, as text (times in RFC 3339).
    pub value: String,
    /// For times, unix ms (pages show them in the reader's terms).
    pub at: Option<Millis>,
}

/// One step of a request's story. `request.created` gives two (intent, policy decision); every
/// other event one.
#[derive(Debug, Clone)]
pub struct TimelineStep {
    /// The event this step reads from.
    pub event: AuditEvent,
    /// E.g. "Approval", "Grant issued".
    pub title: String,
    /// Who caused it, in words.
    pub actor: String,
    /// What a reader needs, in order.
    pub facts: Vec<Fact>,
}

/// Names shown instead of bare ids, looked up before describing events.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// User id → (display name, e-mail).
    pub people: HashMap<String, (String, String)>,
    /// Passkey id → the name its owner gave it.
    pub passkeys: HashMap<String, String>,
    /// Agent id → name.
    pub agents: HashMap<String, String>,
}

/// The text at a JSON pointer (numbers and booleans as written).
fn text_at(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A person as a reader knows them: "Ada Admin <ada@example.com>", or the bare id when they
/// are gone.
fn person_label(names: &Names, id: &str) -> String {
    match names.people.get(id) {
        Some((name, email)) => format!("{name} <{email}>"),
        None => format!("user {id}"),
    }
}

/// A decision's delegation (its `delegation` member: the claimed chain and the registered
/// lineage) in one line: "alice@example.com → planner-agent → the agent; registered under
/// root-id → parent-id". Agent ids in the lineage are named when `names` knows them.
fn delegation_text(d: &Value, names: &Names) -> Option<String> {
    let d = d.get("delegation")?;
    let mut hops: Vec<String> = Vec::new();
    for link in d
        .get("chain")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let actor = text_at(link, "/actor").unwrap_or_default();
        if let Some(principal) = text_at(link, "/on_behalf_of") {
            if hops.last() != Some(&principal) {
                hops.push(principal);
            }
        }
        hops.push(actor);
    }
    let lineage: Vec<String> = d
        .get("lineage")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|id| match names.agents.get(id) {
            Some(name) => format!("{name} ({id})"),
            None => id.to_string(),
        })
        .collect();
    let mut out = String::new();
    if !hops.is_empty() {
        hops.push("the agent".into());
        out.push_str(&hops.join(" → "));
    }
    if !lineage.is_empty() {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str("registered under ");
        out.push_str(&lineage.join(" → "));
    }
    (!out.is_empty()).then_some(out)
}

/// Who caused an event, in words.
pub fn actor_label(actor: &str, names: &Names) -> String {
    if let Some(id) = actor.strip_prefix("user:") {
        return person_label(names, id);
    }
    if let Some(id) = actor.strip_prefix("agent:") {
        return match names.agents.get(id) {
            Some(name) => format!("agent {name}"),
            None => format!("agent {id}"),
        };
    }
    match actor {
        "system" => "Countersign".into(),
        "policy" => "the policy".into(),
        "downstream" => "the downstream system".into(),
        "cli" => "the command line".into(),
        other => other.into(),
    }
}

/// Reads an event as the steps of a request's story: the facts a reader needs, by kind. Pure:
/// names come in `names`; unknown kinds get a step with no facts (their evidence is still
/// shown as stored).
pub fn describe(e: &AuditEvent, names: &Names) -> Vec<TimelineStep> {
    let d = &e.data;
    let mut facts = Vec::new();
    let mut fact = |key: &'static str, label: &'static str, value: Option<String>| {
        if let Some(value) = value {
            facts.push(Fact {
                key,
                label,
                value,
                at: None,
            });
        }
    };
    let person = |id: Option<String>| id.map(|id| person_label(names, &id));
    let step = |title: &str, facts: Vec<Fact>| TimelineStep {
        event: e.clone(),
        title: title.to_string(),
        actor: actor_label(&e.actor, names),
        facts,
    };
    let time_fact = |key: &'static str, label: &'static str, ms: Millis| Fact {
        key,
        label,
        value: crate::clock::rfc3339(ms),
        at: Some(ms),
    };
    // Kinds this version does not know (written by a newer one) show as their text.
    let kind = e.kind.parse::<EventKind>().ok();
    let title = match kind {
        Some(EventKind::RequestCreated) => {
            let agent = text_at(d, "/agent_id").map(|id| match names.agents.get(&id) {
                Some(name) => format!("{name} ({id})"),
                None => id,
            });
            fact("agent", "Agent", agent);
            fact("action", "Action", text_at(d, "/request/action/type"));
            fact("target", "Target", text_at(d, "/request/action/target"));
            fact(
                "operation",
                "Operation",
                text_at(d, "/request/action/operation"),
            );
            fact("goal", "Goal", text_at(d, "/request/intent/goal"));
            fact(
                "rationale",
                "Rationale",
                text_at(d, "/request/intent/rationale"),
            );
            fact(
                "environment",
                "Environment",
                text_at(d, "/request/context/environment"),
            );
            fact(
                "amount",
                "Amount",
                text_at(d, "/request/context/amount/value").map(|v| {
                    match text_at(d, "/request/context/amount/currency") {
                        Some(c) => format!("{v} {c}"),
                        None => v,
                    }
                }),
            );
            fact("action_hash", "Action hash", text_at(d, "/action_hash"));
            let mut intent = facts;
            if let Some(ms) = d.get("expires_at").and_then(Value::as_i64) {
                intent.push(time_fact("expires_at", "Waits until", ms));
            }
            let mut policy = Vec::new();
            let mut pfact = |key: &'static str, label: &'static str, value: Option<String>| {
                if let Some(value) = value {
                    policy.push(Fact {
                        key,
                        label,
                        value,
                        at: None,
                    });
                }
            };
            pfact("rule", "Rule", text_at(d, "/policy/rule"));
            pfact("outcome", "Outcome", text_at(d, "/policy/outcome"));
            pfact("explanation", "Why", text_at(d, "/policy/explanation"));
            pfact(
                "approvals_required",
                "Approvals needed",
                text_at(d, "/policy/approver_rule/approvals"),
            );
            pfact(
                "approvers",
                "Who may approve",
                d.pointer("/policy/approver_rule/approvers")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .filter(|s| !s.is_empty()),
            );
            pfact("delegation", "Delegation", delegation_text(d, names));
            pfact(
                "policy_version",
                "Policy version",
                text_at(d, "/policy/version").map(|v| match text_at(d, "/policy/hash") {
                    Some(h) => format!("{v} ({h})"),
                    None => v,
                }),
            );
            return vec![step("Intent", intent), step("Policy decision", policy)];
        }
        Some(EventKind::ApprovalRecorded | EventKind::RequestDenied) => {
            fact("approver", "Person", person(text_at(d, "/user_id")));
            fact(
                "passkey",
                "Passkey",
                text_at(d, "/passkey_id").map(|id| match names.passkeys.get(&id) {
                    Some(name) => format!("{name} ({id})"),
                    None => format!("{id} (since removed)"),
                }),
            );
            fact(
                "credential_id",
                "Credential id",
                text_at(d, "/credential_id"),
            );
            fact("display_hash", "Display hash", text_at(d, "/display_hash"));
            fact("action_hash", "Action hash", text_at(d, "/action_hash"));
            fact("challenge", "Challenge", text_at(d, "/challenge"));
            fact(
                "user_verified",
                "User verified",
                text_at(d, "/user_verified"),
            );
            fact("rule", "Rule", text_at(d, "/rule"));
            fact("reason_code", "Reason code", text_at(d, "/reason_code"));
            fact("reason", "Reason", text_at(d, "/reason"));
            fact("delegation", "Delegation", delegation_text(d, names));
            if kind == Some(EventKind::ApprovalRecorded) {
                "Approval"
            } else {
                "Denied"
            }
        }
        Some(EventKind::RequestApproved) => {
            let approvers = d
                .get("approvers")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|id| person_label(names, id))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|s| !s.is_empty());
            fact(
                "approved_by",
                "Approved by",
                approvers.or_else(|| text_at(d, "/by")),
            );
            fact("rule", "Rule", text_at(d, "/rule"));
            fact("delegation", "Delegation", delegation_text(d, names));
            "Approved"
        }
        Some(EventKind::AgentParentSet) => {
            let agent = |id: Option<String>| {
                id.map(|id| match names.agents.get(&id) {
                    Some(name) => format!("{name} ({id})"),
                    None => id,
                })
            };
            fact("agent", "Agent", agent(text_at(d, "/agent_id")));
            fact(
                "parent",
                "Sub-agent of",
                agent(text_at(d, "/parent_id")).or_else(|| Some("no one".into())),
            );
            fact(
                "previous_parent",
                "Before",
                agent(text_at(d, "/previous_parent_id")),
            );
            "Agent's parent set"
        }
        Some(EventKind::GrantIssued) => {
            fact("jti", "Grant id", text_at(d, "/jti"));
            fact("audience", "For", text_at(d, "/claims/aud"));
            fact("key", "Signing key", text_at(d, "/kid"));
            fact("bound_key", "Bound to key", text_at(d, "/claims/cnf/jkt"));
            let mut out = facts;
            if let Some(exp) = d.pointer("/claims/exp").and_then(Value::as_i64) {
                out.push(time_fact("expires_at", "Expires", exp.saturating_mul(1000)));
            }
            return vec![step("Grant issued", out)];
        }
        Some(EventKind::GrantRedeemed) => {
            fact("jti", "Grant id", text_at(d, "/jti"));
            "Grant redeemed"
        }
        Some(EventKind::GrantOutcome) => {
            fact("outcome", "Outcome", text_at(d, "/outcome"));
            fact("detail", "Detail", text_at(d, "/detail"));
            fact("jti", "Grant id", text_at(d, "/jti"));
            "Outcome reported"
        }
        Some(EventKind::GrantRevoked) => {
            fact("jti", "Grant id", text_at(d, "/jti"));
            fact("reason", "Reason", text_at(d, "/reason"));
            "Grant revoked"
        }
        Some(EventKind::GrantExpired) => {
            fact("jti", "Grant id", text_at(d, "/jti"));
            "Grant expired unused"
        }
        Some(EventKind::RequestCancelled) => {
            fact("by", "By", text_at(d, "/by"));
            fact("reason", "Reason", text_at(d, "/reason"));
            "Cancelled"
        }
        Some(EventKind::RequestExpired) => "Expired undecided",
        Some(EventKind::CredentialIssued) => {
            fact("provider", "Provider", text_at(d, "/provider"));
            fact("login", "Login", text_at(d, "/login"));
            fact(
                "member_of",
                "With the privileges of",
                text_at(d, "/member_of"),
            );
            fact("expires_at", "Until", text_at(d, "/expires_at"));
            fact(
                "secret_fingerprint",
                "Provider secret",
                text_at(d, "/secret_fingerprint"),
            );
            "Credential released"
        }
        Some(EventKind::CredentialRevoking) => {
            fact("login", "Login", text_at(d, "/login"));
            fact("reason", "Because", text_at(d, "/reason"));
            "Credential revocation started"
        }
        Some(EventKind::CredentialRevokeStep) => {
            fact("step", "Step", text_at(d, "/step"));
            fact("sessions", "Sessions ended", text_at(d, "/sessions"));
            fact(
                "role_absent",
                "Role already gone",
                text_at(d, "/role_absent"),
            );
            "Credential revocation step"
        }
        Some(EventKind::CredentialRevoked) => {
            fact("login", "Login", text_at(d, "/login"));
            fact("reason", "Because", text_at(d, "/reason"));
            "Credential revoked"
        }
        Some(EventKind::CredentialReaped) => {
            fact("provider", "Provider", text_at(d, "/provider"));
            fact("login", "Login", text_at(d, "/login"));
            "Leftover login removed by the reaper"
        }
        Some(EventKind::GatewayForwarded) => {
            fact("operation", "Call", text_at(d, "/operation"));
            fact("status", "Upstream answered", text_at(d, "/status"));
            fact("bytes_sent", "Bytes sent", text_at(d, "/bytes_sent"));
            fact(
                "bytes_received",
                "Bytes received",
                text_at(d, "/bytes_received"),
            );
            fact("error", "Error", text_at(d, "/error"));
            "Forwarded through the gateway"
        }
        Some(EventKind::StandingCreated) => {
            fact("covers", "Covers", text_at(d, "/covers"));
            fact("uses", "Uses", text_at(d, "/uses"));
            fact("expires_at", "Until", text_at(d, "/expires_at"));
            "Standing approval given"
        }
        Some(EventKind::StandingUsed) => {
            fact(
                "standing_id",
                "Standing approval",
                text_at(d, "/standing_id"),
            );
            fact("uses_left", "Uses left", text_at(d, "/uses_left"));
            fact(
                "ceremony_id",
                "Given in ceremony",
                text_at(d, "/ceremony_id"),
            );
            "Approved by a standing approval"
        }
        Some(EventKind::StandingRevoked) => {
            fact(
                "standing_id",
                "Standing approval",
                text_at(d, "/standing_id"),
            );
            fact("reason", "Because", text_at(d, "/reason"));
            "Standing approval revoked"
        }
        Some(EventKind::CallbackDelivered) => {
            fact("endpoint", "Endpoint", text_at(d, "/endpoint"));
            fact("status", "Announced", text_at(d, "/status"));
            fact("attempts", "Attempts", text_at(d, "/attempts"));
            "Agent called back"
        }
        Some(EventKind::CallbackFailed) => {
            fact("endpoint", "Endpoint", text_at(d, "/endpoint"));
            fact("status", "Announced", text_at(d, "/status"));
            fact("attempts", "Attempts", text_at(d, "/attempts"));
            fact("error", "Last error", text_at(d, "/error"));
            "Callback to the agent failed"
        }
        _ => e.kind.as_str(),
    }
    .to_string();
    vec![step(&title, facts)]
}

/// An event of request `r1` at seq 7, for tests of the wording and of the service around it.
#[cfg(test)]
pub(crate) fn test_event(kind: &str, actor: &str, data: Value) -> AuditEvent {
    AuditEvent {
        seq: 7,
        at: 1_000,
        actor: actor.into(),
        kind: kind.into(),
        request_id: Some("r1".into()),
        data,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::test_event as event;
    use super::*;
    use serde_json::json;

    fn fact<'a>(step: &'a TimelineStep, key: &str) -> Option<&'a str> {
        step.facts
            .iter()
            .find(|f| f.key == key)
            .map(|f| f.value.as_str())
    }

    #[test]
    fn an_approval_reads_with_its_person_passkey_and_hashes() {
        let mut names = Names::default();
        names
            .people
            .insert("u1".into(), ("Ada".into(), "ada@example.com".into()));
        names.passkeys.insert("p1".into(), "Phone".into());
        let e = event(
            "approval.recorded",
            "user:u1",
            json!({ "user_id": "u1", "passkey_id": "p1", "credential_id": "cred",
                    "display_hash": "sha256:d", "action_hash": "sha256:a", "user_verified": true }),
        );
        let steps = describe(&e, &names);
        assert_eq!(steps.len(), 1);
        let s = &steps[0];
        assert_eq!(s.title, "Approval");
        assert_eq!(s.actor, "Ada <ada@example.com>");
        assert_eq!(fact(s, "approver"), Some("Ada <ada@example.com>"));
        assert_eq!(fact(s, "passkey"), Some("Phone (p1)"));
        assert_eq!(fact(s, "credential_id"), Some("cred"));
        assert_eq!(fact(s, "display_hash"), Some("sha256:d"));
        assert_eq!(fact(s, "user_verified"), Some("true"));
        assert_eq!(fact(s, "reason"), None, "absent fields are left out");
        // A passkey removed since is still named by id.
        let s = &describe(&e, &Names::default())[0];
        assert_eq!(fact(s, "passkey"), Some("p1 (since removed)"));
        assert_eq!(fact(s, "approver"), Some("user u1"));
    }

    #[test]
    fn creation_reads_as_intent_then_policy_decision() {
        let e = event(
            "request.created",
            "agent:a1",
            json!({ "agent_id": "a1", "action_hash": "sha256:a", "expires_at": 5_000,
                    "request": { "action": { "type": "payments.transfer", "target": "bank" },
                                 "intent": { "goal": "Pay INV-1" },
                                 "context": { "amount": { "value": "10.00", "currency": "EUR" } } },
                    "policy": { "version": 2, "hash": "sha256:p", "rule": "default", "outcome": "pending",
                                "explanation": "needs one", "approver_rule": { "approvals": 1, "approvers": ["owner"] } } }),
        );
        let mut names = Names::default();
        names.agents.insert("a1".into(), "invoice-bot".into());
        let steps = describe(&e, &names);
        assert_eq!(
            steps.iter().map(|s| s.title.as_str()).collect::<Vec<_>>(),
            ["Intent", "Policy decision"]
        );
        assert_eq!(steps[0].actor, "agent invoice-bot");
        assert_eq!(fact(&steps[0], "goal"), Some("Pay INV-1"));
        assert_eq!(fact(&steps[0], "amount"), Some("10.00 EUR"));
        assert_eq!(fact(&steps[0], "agent"), Some("invoice-bot (a1)"));
        let expires = steps[0]
            .facts
            .iter()
            .find(|f| f.key == "expires_at")
            .unwrap();
        assert_eq!(expires.at, Some(5_000));
        assert_eq!(expires.value, "1970-01-01T00:00:05.000Z");
        assert_eq!(fact(&steps[1], "rule"), Some("default"));
        assert_eq!(fact(&steps[1], "explanation"), Some("needs one"));
        assert_eq!(fact(&steps[1], "approvals_required"), Some("1"));
        assert_eq!(fact(&steps[1], "policy_version"), Some("2 (sha256:p)"));
    }

    #[test]
    fn a_delegated_decision_reads_as_a_chain_of_actors() {
        let mut names = Names::default();
        names.agents.insert("p1".into(), "planner-agent".into());
        let e = event(
            "request.approved",
            "user:u1",
            json!({ "approvers": ["u1"], "delegation": {
                "chain": [{ "actor": "planner-agent", "on_behalf_of": "alice@example.com" },
                          { "actor": "invoice-bot", "on_behalf_of": "planner-agent" }],
                "lineage": ["p1"], "depth": 2 } }),
        );
        let s = &describe(&e, &names)[0];
        assert_eq!(
            fact(s, "delegation"),
            Some(
                "alice@example.com → planner-agent → invoice-bot → the agent; registered under \
                 planner-agent (p1)"
            )
        );
        let direct = event(
            "request.approved",
            "user:u1",
            json!({ "approvers": ["u1"] }),
        );
        assert_eq!(fact(&describe(&direct, &names)[0], "delegation"), None);
        let set = event(
            "agent.parent_set",
            "cli",
            json!({ "agent_id": "c1", "parent_id": "p1", "previous_parent_id": null }),
        );
        let s = &describe(&set, &names)[0];
        assert_eq!(s.title, "Agent's parent set");
        assert_eq!(fact(s, "parent"), Some("planner-agent (p1)"));
        assert_eq!(fact(s, "previous_parent"), None);
    }

    #[test]
    fn a_grant_reads_with_its_id_and_expiry() {
        let e = event(
            "grant.issued",
            "system",
            json!({ "jti": "j1", "kid": "k1", "claims": { "aud": "bank", "exp": 60 } }),
        );
        let s = &describe(&e, &Names::default())[0];
        assert_eq!(s.title, "Grant issued");
        assert_eq!(s.actor, "Countersign");
        assert_eq!(fact(s, "jti"), Some("j1"));
        let exp = s.facts.iter().find(|f| f.key == "expires_at").unwrap();
        assert_eq!(exp.at, Some(60_000));
        let unknown = &describe(&event("something.new", "cli", json!({})), &Names::default())[0];
        assert_eq!(unknown.title, "something.new");
        assert!(unknown.facts.is_empty());
    }

    #[test]
    fn credentials_read_as_what_was_released_used_and_taken_away() {
        let names = Names::default();
        let issued = event(
            "credential.issued",
            "system",
            json!({ "provider": "orders-db", "login": "cs_ab", "member_of": "orders_rw",
                    "expires_at": "2026-12-07T00:10:00.000Z",
                    "secret_fingerprint": "hmac-sha256:00" }),
        );
        let s = &describe(&issued, &names)[0];
        assert_eq!(s.title, "Credential released");
        assert_eq!(fact(s, "member_of"), Some("orders_rw"));
        let step = event(
            "credential.revoke_step",
            "system",
            json!({ "step": "terminate_sessions", "sessions": 2 }),
        );
        let s = &describe(&step, &names)[0];
        assert_eq!(s.title, "Credential revocation step");
        assert_eq!(fact(s, "sessions"), Some("2"));
        let forwarded = event(
            "gateway.forwarded",
            "system",
            json!({ "operation": "POST /v2/transfers", "status": 201, "bytes_sent": 40,
                    "bytes_received": 12 }),
        );
        let s = &describe(&forwarded, &names)[0];
        assert_eq!(s.title, "Forwarded through the gateway");
        assert_eq!(fact(s, "status"), Some("201"));
    }

    #[test]
    fn callbacks_read_with_their_endpoint_and_attempts() {
        let e = event(
            "callback.delivered",
            "system",
            json!({ "endpoint": "https://agent.example", "status": "approved", "attempts": 3 }),
        );
        let s = &describe(&e, &Names::default())[0];
        assert_eq!(s.title, "Agent called back");
        assert_eq!(fact(s, "endpoint"), Some("https://agent.example"));
        assert_eq!(fact(s, "attempts"), Some("3"));
        let e = event(
            "callback.failed",
            "system",
            json!({ "endpoint": "https://agent.example", "status": "denied", "attempts": 10,
                    "error": "the endpoint answered 503" }),
        );
        let s = &describe(&e, &Names::default())[0];
        assert_eq!(s.title, "Callback to the agent failed");
        assert_eq!(fact(s, "error"), Some("the endpoint answered 503"));
    }
}
