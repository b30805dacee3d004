//! The active policy: applying a new version, showing it, checking a request against a draft.
//!
//! The policy is parsed once per version and cached. Intake decides with the cached version
//! without reading anything ([`Countersign::intake_policy`]); the intake writer then reads the
//! newest version inside the transaction that would commit the request, and a request decided
//! under an older one is not written but decided again (see `writer`). So a policy applied on
//! another replica or from the command line takes effect at the next request there, as it did
//! when every request read the version first, and without that read on each request.
//! Everything else asks the database which version is newest (one indexed read).

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::people::SignedIn;
use super::{Countersign, Error};
use crate::domain::audit_kind::EventKind;
use crate::domain::diff;
use crate::domain::intake::{parse_new_request, Limits};
use crate::domain::policy::form::{self as policy_form, FieldProblem, RuleForm};
use crate::domain::policy::{Policy, PolicyDecision, PolicyInput};
use crate::store::{self, audit, listings, policies};

/// A parsed policy version.
#[derive(Debug)]
pub struct ActivePolicy {
    /// Its version number (0 before any was applied: the empty policy, default rule only).
    pub version: i64,
    /// `sha256:` of its normalised source.
    pub hash: String,
    /// The rules.
    pub policy: Policy,
}

/// The parsed active policy, kept between requests.
#[derive(Debug, Default)]
pub struct PolicyCache {
    current: Mutex<Option<Arc<ActivePolicy>>>,
}

impl Countersign {
    /// The policy intake decides with: the cached one, read only when none is (the writer
    /// checks the version when it commits; see the module docs).
    pub(crate) async fn intake_policy(&self) -> Result<Arc<ActivePolicy>, Error> {
        let cached = self
            .policy_cache
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match cached {
            Some(p) => Ok(p),
            None => self.active_policy().await,
        }
    }

    /// The policy in force now.
    pub async fn active_policy(&self) -> Result<Arc<ActivePolicy>, Error> {
        let newest = store::policies::newest_version(self.db.reader()).await?;
        let (version, hash) = match newest {
            Some(v) => v,
            None => {
                let empty = Policy::default();
                return Ok(Arc::new(ActivePolicy {
                    version: 0,
                    hash: empty.hash(),
                    policy: empty,
                }));
            }
        };
        {
            let cached = self
                .policy_cache
                .current
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(p) = cached
                .as_ref()
                .filter(|p| p.version == version && p.hash == hash)
            {
                return Ok(p.clone());
            }
        }
        let row = policies::active(self.db.reader())
            .await?
            .ok_or_else(|| Error::internal("policy vanished"))?;
        let policy = Policy::from_toml(&row.source).map_err(|e| {
            Error::internal(format!("stored policy v{} is invalid: {e}", row.version))
        })?;
        let active = Arc::new(ActivePolicy {
            version: row.version,
            hash: row.hash,
            policy,
        });
        *self
            .policy_cache
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(active.clone());
        Ok(active)
    }

    /// Applies a policy file: validated whole (an invalid file changes nothing), normalised,
    /// stored as a new version. Returns the version and hash; applying the active policy again
    /// is a no-op that returns the current version.
    pub async fn apply_policy(&self, source: &str, actor: &str) -> Result<(i64, String), Error> {
        let policy = Policy::from_toml(source).map_err(|e| Error::InvalidRequest {
            field: e.key.clone(),
            detail: e.to_string(),
        })?;
        self.store_policy(&policy, None, actor).await
    }

    /// The active policy in the file format (`policy show`), byte-for-byte what `apply` stored.
    pub async fn show_policy(&self) -> Result<String, Error> {
        Ok(policies::active(self.db.reader())
            .await?
            .map(|p| p.source)
            .unwrap_or_else(|| Policy::default().to_toml()))
    }
}

/// One applied policy version, with what it changed.
#[derive(Debug, Clone)]
pub struct PolicyVersion {
    /// 1, 2, 3…
    pub version: i64,
    /// Its hash.
    pub hash: String,
    /// Who applied it (`user:<id>`, `cli`).
    pub applied_by: String,
    /// When (unix ms).
    pub applied_at: i64,
    /// Its file against the version before it (the first against the built-in default).
    pub diff: Vec<diff::Line>,
    /// Whether it is the one in force.
    pub active: bool,
}

impl Countersign {
    /// Every policy version, newest first, each with its diff (admins only).
    pub async fn policy_history(&self, who: &SignedIn) -> Result<Vec<PolicyVersion>, Error> {
        require_admin(who)?;
        let rows = policies::history(self.db.reader()).await?;
        let default = Policy::default().to_toml();
        let mut out = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let before = rows
                .get(i + 1)
                .map(|r| r.source.as_str())
                .unwrap_or(&default);
            out.push(PolicyVersion {
                version: row.version,
                hash: row.hash.clone(),
                applied_by: row.applied_by.clone(),
                applied_at: row.applied_at,
                diff: diff::lines(before, &row.source),
                active: i == 0,
            });
        }
        Ok(out)
    }

    /// Makes an earlier version the active one again, as a new version (admins only): history
    /// is never rewritten, so the rollback itself is on record.
    pub async fn rollback_policy(
        &self,
        who: &SignedIn,
        version: i64,
    ) -> Result<(i64, String), Error> {
        require_admin(who)?;
        let rows = policies::history(self.db.reader()).await?;
        let old = rows
            .iter()
            .find(|r| r.version == version)
            .ok_or_else(|| Error::NotFound(format!("no policy version {version}")))?;
        self.apply_policy(&old.source, &format!("user:{}", who.person.id))
            .await
    }
}

/// What the policy editor starts from.
#[derive(Debug, Clone)]
pub struct EditorState {
    /// The version in force (0: none applied yet); apply sends it back to detect a concurrent
    /// change.
    pub version: i64,
    /// Its rules as forms.
    pub rules: Vec<RuleForm>,
    /// Recent real requests to dry-run the draft against: (id, one-line label).
    pub recent: Vec<(String, String)>,
}

/// A request made up in the editor to try the draft on. Empty text means "not given".
#[derive(Debug, Clone, Default)]
pub struct SampleRequest {
    /// The action type, e.g. `payments.transfer`.
    pub action_type: String,
    /// The target, e.g. `bank-api`.
    pub target: String,
    /// The environment.
    pub environment: String,
    /// The data sensitivity.
    pub data_sensitivity: String,
    /// The amount, e.g. `250.00`.
    pub amount: String,
    /// Its currency.
    pub currency: String,
    /// How many hops of delegation it claims (empty: none): the dry run gives it a claimed
    /// chain of that length.
    pub delegation_depth: String,
}

/// What to dry-run the draft on.
#[derive(Debug, Clone)]
pub enum DryRunOn {
    /// A request typed into the editor.
    Sample(SampleRequest),
    /// One of the recent real requests, by id.
    Recent(String),
}

/// The draft checked: its problems, or its file, its diff against the active version and,
/// when asked, what it would decide for one request.
#[derive(Debug, Clone, Default)]
pub struct DraftPreview {
    /// Every problem found, next to its field; empty when the draft is valid.
    pub problems: Vec<FieldProblem>,
    /// The draft in the file format (`policy show` after applying it); empty when invalid.
    pub text: String,
    /// That file against the active one.
    pub diff: Vec<diff::Line>,
    /// The dry run: which request (a label), and the decision with the rules passed over.
    pub dry_run: Option<(String, PolicyDecision)>,
}

/// How many recent requests the editor offers for dry runs.
const RECENT_FOR_DRY_RUN: i64 = 20;

impl Countersign {
    /// The active policy as editor forms, and recent requests to try drafts on (admins only).
    pub async fn policy_editor(&self, who: &SignedIn) -> Result<EditorState, Error> {
        require_admin(who)?;
        let active = self.active_policy().await?;
        let recent = listings::recent(self.db.reader(), RECENT_FOR_DRY_RUN)
            .await?
            .into_iter()
            .map(|r| {
                let label = format!("{} on {} ({}, {})", r.action_type, r.target, r.status, r.id);
                (r.id, label)
            })
            .collect();
        Ok(EditorState {
            version: active.version,
            rules: policy_form::to_forms(&active.policy),
            recent,
        })
    }

    /// Checks a draft without applying it (admins only): its problems, or its file and diff
    /// against the active version, and optionally its decision for one request.
    pub async fn preview_policy(
        &self,
        who: &SignedIn,
        rules: &[RuleForm],
        on: Option<DryRunOn>,
    ) -> Result<DraftPreview, Error> {
        require_admin(who)?;
        let draft = match policy_form::from_forms(rules) {
            Ok(p) => p,
            Err(problems) => {
                return Ok(DraftPreview {
                    problems,
                    ..DraftPreview::default()
                })
            }
        };
        let active = self.show_policy().await?;
        let text = draft.to_toml();
        let dry_run = match on {
            None => None,
            Some(DryRunOn::Sample(sample)) => Some(dry_run_sample(&draft, &sample)?),
            Some(DryRunOn::Recent(id)) => {
                let row = crate::store::requests::get(self.db.reader(), &id)
                    .await?
                    .ok_or_else(|| Error::invalid("recent", "no such request"))?;
                let new =
                    parse_new_request(row.body.as_bytes(), &Limits::default()).map_err(|e| {
                        Error::internal(format!("stored request {id} unreadable: {e:?}"))
                    })?;
                // The agent's lineage as registered now: a dry run asks what the draft would
                // decide if this request came in today.
                let lineage =
                    crate::store::agents::lineage(self.db.reader(), &row.agent_id).await?;
                let label = format!("{} on {} ({})", row.action_type, row.target, row.id);
                Some((
                    label,
                    draft.evaluate_explained(&policy_input(&new, &lineage)),
                ))
            }
        };
        Ok(DraftPreview {
            problems: Vec::new(),
            diff: diff::lines(&active, &text),
            text,
            dry_run,
        })
    }

    /// Applies a draft from the editor as a new version (admins only). `base_version` is the
    /// version the editor started from: when someone applied another version meanwhile, this
    /// refuses (409) rather than silently undoing their change.
    pub async fn apply_policy_draft(
        &self,
        who: &SignedIn,
        base_version: i64,
        rules: &[RuleForm],
    ) -> Result<i64, Error> {
        require_admin(who)?;
        let draft = policy_form::from_forms(rules).map_err(|problems| {
            let first = &problems[0];
            Error::invalid(
                first.field.clone(),
                match first.rule {
                    Some(i) => format!("rule #{}: {}", i + 1, first.message),
                    None => first.message.clone(),
                },
            )
        })?;
        let (version, _) = self
            .store_policy(
                &draft,
                Some(base_version),
                &format!("user:{}", who.person.id),
            )
            .await?;
        Ok(version)
    }

    /// Stores a validated policy as a new version, unless it is the active one already. With a
    /// `base_version`, only if that is still the newest: checked inside the writing transaction
    /// so that of two admins applying at once, one wins.
    async fn store_policy(
        &self,
        policy: &Policy,
        base_version: Option<i64>,
        actor: &str,
    ) -> Result<(i64, String), Error> {
        let normalised = policy.to_toml();
        let hash = policy.hash();
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let active = policies::active(&mut *tx).await?;
        if base_version.is_some_and(|b| b != active.as_ref().map_or(0, |a| a.version)) {
            return Err(Error::Conflict(
                "another version was applied meanwhile; reload to edit it".into(),
            ));
        }
        if let Some(active) = active.filter(|a| a.hash == hash) {
            return Ok((active.version, hash));
        }
        // A rule that releases a credential must name a provider that exists, or every request
        // it approves would fail at redemption.
        for (provider, rule) in policy.credential_providers() {
            if store::credentials::provider(&mut *tx, provider)
                .await?
                .is_none()
            {
                let index = policy.rules.iter().position(|r| r.id == rule).unwrap_or(0);
                return Err(Error::invalid(
                    "credential",
                    format!(
                        "rule {rule:?} (#{}): credential: no credential provider is named \
                         {provider:?} (add it first: countersign credential add)",
                        index + 1
                    ),
                ));
            }
        }
        let version = policies::append(&mut tx, &hash, &normalised, actor, now).await?;
        audit::append(
            &mut tx,
            now,
            actor,
            EventKind::PolicyApplied,
            None,
            &json!({ "version": version, "hash": hash, "rules": policy.rules.len() }),
        )
        .await?;
        // Standing approvals the new policy no longer allows end with it.
        super::standing::end_disallowed(&mut tx, policy, actor, now).await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok((version, hash))
    }
}

/// The facts of an agent's request that the policy looks at, given the agent's registered
/// lineage (ancestor ids; see `delegation` for why the depth is the larger of the two).
pub(crate) fn policy_input<'a>(
    new: &'a crate::domain::intake::NewRequest,
    lineage: &[String],
) -> PolicyInput<'a> {
    PolicyInput {
        delegation_depth: super::delegation::delegation_depth(new, lineage),
        action_type: &new.action.r#type,
        target: &new.action.target,
        environment: new.context.environment.as_deref(),
        data_sensitivity: new.context.data_sensitivity.as_ref().map(|d| d.as_str()),
        amount: new
            .context
            .amount
            .as_ref()
            .map(|a| (&a.value, a.currency.as_str())),
    }
}

/// Evaluates a typed-in sample; its fields are checked like an agent's (400 naming the field).
fn dry_run_sample(
    policy: &Policy,
    sample: &SampleRequest,
) -> Result<(String, PolicyDecision), Error> {
    let given = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    if given(&sample.action_type).is_none() {
        return Err(Error::invalid(
            "sample.action_type",
            "give the action type to try",
        ));
    }
    let mut context = serde_json::Map::new();
    if let Some(env) = given(&sample.environment) {
        context.insert("environment".into(), env.into());
    }
    if let Some(level) = given(&sample.data_sensitivity) {
        context.insert("data_sensitivity".into(), level.into());
    }
    match (given(&sample.amount), given(&sample.currency)) {
        (Some(value), Some(currency)) => {
            context.insert(
                "amount".into(),
                json!({ "value": value, "currency": currency.to_ascii_uppercase() }),
            );
        }
        (Some(_), None) => {
            return Err(Error::invalid(
                "sample.currency",
                "an amount needs its currency",
            ))
        }
        (None, Some(_)) => return Err(Error::invalid("sample.amount", "give the amount too")),
        (None, None) => {}
    }
    if let Some(depth) = given(&sample.delegation_depth) {
        let hops = depth
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= Limits::default().max_delegation)
            .ok_or_else(|| {
                Error::invalid(
                    "sample.delegation_depth",
                    format!(
                        "a delegation depth is a whole number from 0 to {}",
                        Limits::default().max_delegation
                    ),
                )
            })?;
        let chain: Vec<Value> = (1..=hops)
            .map(|i| json!({ "actor": format!("sample-agent-{i}") }))
            .collect();
        if !chain.is_empty() {
            context.insert("delegation".into(), Value::Array(chain));
        }
    }
    let body = json!({
        "action": {
            "type": sample.action_type.trim(),
            "target": given(&sample.target).unwrap_or_else(|| "sample".into()),
        },
        "intent": { "goal": "policy editor dry run" },
        "context": context,
    });
    let new = parse_new_request(body.to_string().as_bytes(), &Limits::default()).map_err(|e| {
        Error::invalid(
            format!("sample.{}", e.field.as_deref().unwrap_or("request")),
            e.detail,
        )
    })?;
    let label = format!("{} on {}", new.action.r#type, new.action.target);
    let decision = policy.evaluate_explained(&policy_input(&new, &[]));
    Ok((label, decision))
}

/// Refuses anyone but an admin. Every admin-only use case calls this first, whatever the
/// HTTP edge already checked.
pub(crate) fn require_admin(who: &SignedIn) -> Result<(), Error> {
    if who.person.role.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden("this is for admins only".into()))
    }
}

/// Evaluates a request body (the agent API's JSON) against a policy file, explaining which rule
/// matches and which were passed over (`policy check`). Pure: touches no database.
pub fn check_policy(source: &str, request_json: &[u8]) -> Result<PolicyDecision, Error> {
    let policy = Policy::from_toml(source).map_err(|e| Error::InvalidRequest {
        field: e.key.clone(),
        detail: e.to_string(),
    })?;
    let new =
        parse_new_request(request_json, &Limits::default()).map_err(|e| Error::InvalidRequest {
            field: e.field,
            detail: e.detail,
        })?;
    Ok(policy.evaluate_explained(&policy_input(&new, &[])))
}
