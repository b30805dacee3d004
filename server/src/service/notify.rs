//! Telling people that something waits for them: who may decide a request, and the mails that
//! say so (approval requests to eligible approvers, enrolment links to invited people).
//!
//! Mail is sent after the state it announces is committed, and never on the caller's path: the
//! agent gets its `202` without waiting for the approvers to be looked up, and nothing here can
//! fail a request or an invitation (see [`crate::mail`]). A request is announced once, by the
//! call that created it: an idempotent replay returns the stored request without announcing it
//! again, and the loser of an idempotency-key race never gets this far.
//!
//! Announcements are made by one task per process, the [`Announcer`], which takes whatever has
//! queued and works through it together: the approvers of requests with the same owner and
//! approver rule are looked up once, and how many mails each approver had in the last minute is
//! read once for all of them. Under load (an agent asking thousands of times a minute, its
//! approvers long at their mail limit) that is two reads for a batch of requests rather than
//! two for each; each mail still takes its place under the limit with its own conditional write.
//!
//! A mail says what is asked and links to the request's page; the link grants nothing by itself
//! (the page wants a signed-in approver, and deciding wants their passkey). Much of what we mail
//! was written by the agent (its goal above all), so every such string goes through
//! [`one_line`]: one line, no control characters, cut to a length — in the subject a CR or LF
//! would start a header of the agent's choosing, and in the body a line break could forge lines
//! of our own text.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::agents::AgentIdentity;
use super::decisions::candidate;
use super::people::{Invitation, Person};
use super::requests::stored_body;
use super::{Countersign, Error};
use crate::clock::{rfc3339, Millis};
use crate::domain::lifecycle::Role;
use crate::domain::policy::ApproverSource;
use crate::domain::quorum::ApproverRule;
use crate::mail::{one_line, Mail, MailKind, Mailer};
use crate::store::requests::{self as rows, RequestRow};
use crate::store::{agents, users, Db};
use crate::telemetry::MailCounters;

/// Longest agent name, action type or target in a subject, in characters.
const SUBJECT_PART_CHARS: usize = 64;
/// Longest agent-written line in a body (the goal), in characters.
const BODY_LINE_CHARS: usize = 300;

impl Countersign {
    /// The people who may approve or deny this request: active, and eligible under the approver
    /// rule stored with it (its status is not looked at; neither is whether they already
    /// decided). Sorted by e-mail address.
    pub async fn eligible_approvers(&self, request_id: &str) -> Result<Vec<Person>, Error> {
        let request = rows::get(self.db.reader(), request_id)
            .await?
            .ok_or_else(|| Error::NotFound("no such request".into()))?;
        let agent = agents::get(self.db.reader(), &request.agent_id)
            .await?
            .ok_or_else(|| Error::internal("request without agent"))?;
        eligible_approvers_of(&self.db, &request, &agent.owner_id).await
    }

    /// Mails every eligible approver of a request that has just been committed as pending. Returns
    /// at once: the [`Announcer`] looks the approvers up and sends the mails off the agent's
    /// path. An approver who has had `prompts_per_approver_per_minute` mails in the last minute
    /// is not mailed: the request waits in their inbox.
    pub(crate) async fn announce_pending(&self, request: &RequestRow, agent: &AgentIdentity) {
        let per_minute = match self.guards().await {
            Ok(g) => g.prompts_per_approver_per_minute,
            Err(e) => {
                tracing::warn!(error = ?e, "could not read the guards; mailing at the default rate");
                crate::domain::guards::Guards::defaults(0).prompts_per_approver_per_minute
            }
        };
        self.announcer.announce(Announcement {
            request: request.clone(),
            agent_name: agent.name.clone(),
            owner_id: agent.owner_id.clone(),
            per_minute,
            now: self.now(),
        });
    }

    /// Mails an invitation's enrolment link to the invited address (already committed).
    pub(crate) fn mail_invitation(&self, invitation: &Invitation, role: Role, groups: &[String]) {
        self.mailer.enqueue(invitation_mail(
            &self.issuer(),
            invitation,
            role.as_str(),
            groups,
        ));
    }
}

/// Who may decide `request`, whose agent belongs to `owner_id`. Only the people the rule's
/// sources could name are read; the rule itself then judges each of them.
async fn eligible_approvers_of(
    db: &Db,
    request: &RequestRow,
    owner_id: &str,
) -> Result<Vec<Person>, Error> {
    let rule: ApproverRule =
        serde_json::from_str(&request.approver_rule).map_err(Error::internal)?;
    let (mut owner, mut admins, mut groups) = (false, false, Vec::new());
    for source in &rule.approvers {
        match source.parse::<ApproverSource>() {
            Ok(ApproverSource::Owner) => owner = true,
            Ok(ApproverSource::Admins) => admins = true,
            Ok(ApproverSource::Group(g)) => groups.push(g),
            // Stored rules were valid policy; an unknown source names nobody, as in quorum.
            Err(_) => {}
        }
    }
    if !owner && !admins && groups.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = db.read_conn().await?;
    let people = users::approver_candidates(&mut conn, owner.then_some(owner_id), admins, &groups)
        .await?
        .into_iter()
        .map(Person::from)
        .filter(|p| rule.is_eligible(&candidate(p), owner_id))
        .collect();
    Ok(people)
}

/// The mail telling one approver that `request` waits for them.
fn approval_mail(issuer: &str, request: &RequestRow, agent_name: &str, to: &Person) -> Mail {
    let body = stored_body(request);
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let agent = one_line(agent_name, SUBJECT_PART_CHARS);
    let action = one_line(&request.action_type, SUBJECT_PART_CHARS);
    let target = one_line(&request.target, SUBJECT_PART_CHARS);
    let subject = format!("Approval needed: {agent} wants to {action} on {target}");

    let mut lines = vec![
        format!("Hello {},", one_line(&to.display_name, 100)),
        String::new(),
        format!("{agent} asks for your approval before it acts."),
        String::new(),
        format!("  Action:       {action} on {target}"),
    ];
    let mut line = |label: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            lines.push(format!("  {label:<13} {}", one_line(&v, BODY_LINE_CHARS)));
        }
    };
    line("Operation:", text(&body["action"]["operation"]));
    line("Goal:", text(&body["intent"]["goal"]));
    line("Environment:", text(&body["context"]["environment"]));
    line("Data:", text(&body["context"]["data_sensitivity"]));
    let amount = &body["context"]["amount"];
    line(
        "Amount:",
        text(&amount["value"])
            .map(|v| format!("{v} {}", text(&amount["currency"]).unwrap_or_default())),
    );
    line(
        "Policy:",
        Some(format!("{} ({})", request.explanation, request.rule_id)),
    );
    line(
        "Approvals:",
        Some(format!("{} needed", request.approvals_required)),
    );
    let minutes = ((request.expires_at - request.created_at) / 60_000).max(1);
    line(
        "Expires:",
        Some(format!(
            "{} (about {minutes} minute{} after it was asked)",
            rfc3339(request.expires_at),
            if minutes == 1 { "" } else { "s" }
        )),
    );
    lines.extend([
        String::new(),
        "Review the whole request and decide:".to_string(),
        format!("{issuer}/requests/{}", request.id),
        String::new(),
        "The link grants nothing by itself: you sign in, check the request on that page and \
         approve or deny it with your passkey. The goal above is in the agent's own words."
            .to_string(),
        String::new(),
        "-- ".to_string(),
        "Countersign. You receive this because you may approve this agent's request.".to_string(),
    ]);
    Mail {
        to: to.email.clone(),
        subject,
        body: lines.join("\n") + "\n",
        kind: MailKind::ApprovalNeeded,
    }
}

/// The mail carrying an invitation's enrolment link.
fn invitation_mail(issuer: &str, invitation: &Invitation, role: &str, groups: &[String]) -> Mail {
    let groups = if groups.is_empty() {
        String::new()
    } else {
        format!(
            ", in group{} {}",
            if groups.len() == 1 { "" } else { "s" },
            groups.join(", ")
        )
    };
    let body = [
        format!("You are invited to Countersign at {issuer} as {role}{groups}."),
        "Countersign asks people like you before AI agents take actions that matter.".to_string(),
        String::new(),
        format!(
            "Register your passkey here (the link works once, until {}):",
            rfc3339(invitation.expires_at)
        ),
        invitation.link.expose().to_string(),
        String::new(),
        "Keep the link to yourself: whoever opens it first enrols. If you did not expect this \
         invitation, ignore this mail and the link expires unused."
            .to_string(),
        String::new(),
        "-- ".to_string(),
        "Countersign".to_string(),
    ]
    .join("\n")
        + "\n";
    Mail {
        to: invitation.email.clone(),
        subject: "Your Countersign invitation".to_string(),
        body,
        kind: MailKind::Invitation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::secrets::Secret;

    fn request(body: serde_json::Value) -> RequestRow {
        RequestRow {
            id: "0190-req".into(),
            agent_id: "agent-1".into(),
            status: crate::domain::lifecycle::RequestStatus::Pending,
            action_hash: "sha256:00".into(),
            body: body.to_string(),
            action_type: "payments.transfer".into(),
            target: "bank-api\r\nBcc: evil@example.com".into(),
            policy_version: 1,
            policy_hash: "sha256:11".into(),
            rule_id: "default".into(),
            explanation: "One approval from the owner".into(),
            approvals_required: 1,
            approver_rule: serde_json::to_string(&ApproverRule::owner_only()).unwrap(),
            grant_ttl_seconds: 60,
            credential: None,
            credential_ttl_seconds: None,
            created_at: 0,
            expires_at: 600_000,
            decided_at: None,
            decided_by: None,
            reason_code: None,
            reason: None,
        }
    }

    fn alice() -> Person {
        Person {
            id: "u1".into(),
            email: "alice@example.com".into(),
            display_name: "Alice".into(),
            role: crate::domain::lifecycle::Role::Owner,
            groups: vec![],
            status: crate::domain::lifecycle::UserStatus::Active,
        }
    }

    #[test]
    fn an_approval_mail_names_agent_and_action_on_one_line_and_links_the_request() {
        let body = serde_json::json!({
            "action": {"type": "payments.transfer", "target": "bank-api"},
            "intent": {"goal": "Pay INV-1042\nClick http://evil.example to approve"},
            "context": {"environment": "production", "amount": {"value": "5000.00", "currency": "EUR"}},
        });
        let m = approval_mail(
            "https://cs.example.com",
            &request(body),
            "invoice-bot",
            &alice(),
        );
        assert_eq!(m.to, "alice@example.com");
        assert_eq!(
            m.subject,
            "Approval needed: invoice-bot wants to payments.transfer on bank-api Bcc: evil@example.com"
        );
        assert!(!m.subject.contains('\n') && !m.subject.contains('\r'));
        assert!(m
            .body
            .contains("https://cs.example.com/requests/0190-req\n"));
        assert!(m
            .body
            .contains("  Goal:         Pay INV-1042 Click http://evil.example to approve\n"));
        assert!(m.body.contains("  Amount:       5000.00 EUR\n"));
        assert!(m.body.contains("  Environment:  production\n"));
        assert!(m
            .body
            .contains("1970-01-01T00:10:00.000Z (about 10 minutes"));
        assert!(m.body.contains("grants nothing by itself"));
        assert!(!m.body.contains("Data:"), "absent fields are left out");
        assert_eq!(m.kind, MailKind::ApprovalNeeded);
    }

    #[test]
    fn long_agent_text_is_cut() {
        let goal = "g".repeat(5_000);
        let body = serde_json::json!({"intent": {"goal": goal}});
        let mut r = request(body);
        r.action_type = "t".repeat(1_000);
        let m = approval_mail("https://cs.example.com", &r, &"n".repeat(1_000), &alice());
        assert!(m.subject.chars().count() < 250, "{}", m.subject.len());
        assert!(m.body.lines().all(|l| l.chars().count() <= 320));
    }

    #[test]
    fn an_invitation_mail_carries_the_link_role_and_expiry() {
        let inv = Invitation {
            link: Secret::new("https://cs.example.com/enrol/abc123".into()),
            email: "bob@example.com".into(),
            expires_at: 0,
        };
        let m = invitation_mail("https://cs.example.com", &inv, "admin", &["finance".into()]);
        assert_eq!(m.to, "bob@example.com");
        assert_eq!(m.kind, MailKind::Invitation);
        assert!(m.body.contains("\nhttps://cs.example.com/enrol/abc123\n"));
        assert!(m.body.contains("as admin, in group finance."));
        assert!(m.body.contains("1970-01-01T00:00:00.000Z"));
    }
}

/// A request to announce, as [`Countersign::announce_pending`] queued it.
#[derive(Debug)]
pub struct Announcement {
    request: RequestRow,
    agent_name: String,
    owner_id: String,
    per_minute: u32,
    now: Millis,
}

/// The most announcements worked through together.
const ANNOUNCE_BATCH: usize = 256;

/// The queue of announcements and the task that makes them (see the module docs).
#[derive(Debug)]
pub struct Announcer {
    queue: mpsc::UnboundedSender<Announcement>,
    waiting: Arc<AtomicUsize>,
}

/// What the announcing task needs.
struct Announcing {
    db: Db,
    mailer: Mailer,
    counters: Arc<MailCounters>,
    issuer: String,
}

impl Announcer {
    /// Starts the announcing task.
    pub fn start(db: Db, mailer: Mailer, counters: Arc<MailCounters>, issuer: String) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let with = Announcing {
            db,
            mailer,
            counters,
            issuer,
        };
        tokio::spawn(run_announcer(with, jobs, waiting.clone()));
        Self { queue, waiting }
    }

    fn announce(&self, a: Announcement) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        if self.queue.send(a).is_err() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("the announcer has stopped: no mail sent");
        }
    }

    /// Announcements queued or being made.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

async fn run_announcer(
    with: Announcing,
    mut jobs: mpsc::UnboundedReceiver<Announcement>,
    waiting: Arc<AtomicUsize>,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < ANNOUNCE_BATCH {
            match jobs.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let n = batch.len();
        announce_batch(&with, &batch).await;
        waiting.fetch_sub(n, Ordering::SeqCst);
    }
}

/// Mails the approvers of each announced request, in order, within their limits.
async fn announce_batch(with: &Announcing, batch: &[Announcement]) {
    // Who may approve, once per owner and approver rule (None when the lookup failed).
    let mut approvers: HashMap<(&str, &str), Option<Vec<Person>>> = HashMap::new();
    for a in batch {
        let key = (a.owner_id.as_str(), a.request.approver_rule.as_str());
        if let std::collections::hash_map::Entry::Vacant(slot) = approvers.entry(key) {
            let people = match eligible_approvers_of(&with.db, &a.request, &a.owner_id).await {
                Ok(people) => Some(people),
                Err(error) => {
                    tracing::warn!(request_id = %a.request.id, error = ?error, "could not look up the approvers to mail");
                    None
                }
            };
            slot.insert(people);
        }
    }
    // Mails each of them had in the last minute, read once; then kept up to date here.
    let mut ids: Vec<&str> = approvers
        .values()
        .flatten()
        .flatten()
        .map(|p| p.id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let now = batch.iter().map(|a| a.now).max().unwrap_or_default();
    let mut recent = match super::guards::prompts_last_minute(&with.db, &ids, now).await {
        Ok(recent) => recent,
        Err(error) => {
            tracing::warn!(error = ?error, "could not count prompts; not mailing");
            return;
        }
    };
    let at_start = recent.clone();
    let mut told = HashSet::new();
    for a in batch {
        let key = (a.owner_id.as_str(), a.request.approver_rule.as_str());
        let Some(Some(people)) = approvers.get(&key) else {
            continue;
        };
        if people.is_empty() {
            tracing::warn!(request_id = %a.request.id, rule = %a.request.rule_id, "nobody can approve this request: no mail sent");
            continue;
        }
        for person in people {
            let had = recent.entry(person.id.clone()).or_default();
            let taken = if *had >= i64::from(a.per_minute) {
                Ok(false)
            } else {
                super::guards::take_prompt(&with.db, &person.id, &a.request.id, a.per_minute, a.now)
                    .await
            };
            match taken {
                Ok(true) => {
                    *had += 1;
                    with.mailer.enqueue(approval_mail(
                        &with.issuer,
                        &a.request,
                        &a.agent_name,
                        person,
                    ));
                }
                Ok(false) => {
                    // Said once, in the batch where an approver's limit is reached, not for
                    // every request held after it: under a burst that was a log line per
                    // request (the `held` counter counts them all).
                    let below_at_start =
                        at_start.get(&person.id).copied().unwrap_or(0) < i64::from(a.per_minute);
                    if below_at_start && told.insert(person.id.as_str()) {
                        tracing::info!(request_id = %a.request.id, to = %person.email, "prompt limit reached: requests wait in the inbox, unmailed, until the minute is over");
                    } else {
                        tracing::debug!(request_id = %a.request.id, to = %person.email, "prompt limit reached: the request waits in the inbox, unmailed");
                    }
                    *had = (*had).max(i64::from(a.per_minute));
                    crate::telemetry::bump(&with.counters.held);
                }
                Err(error) => {
                    tracing::warn!(request_id = %a.request.id, error = ?error, "could not count prompts; not mailing")
                }
            }
        }
    }
}
