//! Reading the audit chain: verifying it end to end (and, given signed checkpoints, that it
//! still extends each of them: see [`super::checkpoints`]), exporting it as JSON lines, and, for
//! admins in the browser, searching it and reading one request's evidence as a timeline.
//!
//! Nothing here writes to the chain; events are appended by the use cases that cause them, in
//! the same transaction. The timeline only *describes* stored events (which field means what,
//! worded in [`crate::domain::timeline`]); the evidence itself is always shown and exported
//! exactly as stored, so a reader can check it against the chain.

use std::io::Write;

use serde_json::Value;

use super::people::SignedIn;
use super::{Countersign, Error};
use crate::clock::Millis;
use crate::domain::audit::{AuditEvent, BrokenLink, ChainVerifier};
use crate::domain::canonical::canonical_json;
use crate::domain::checkpoint::{
    Contradiction, ExtensionCheck, SignedCheckpoint, SourcedCheckpoint,
};
use crate::domain::lifecycle::RequestStatus;
use crate::domain::timeline::describe;
pub use crate::domain::timeline::{Fact, Names, TimelineStep};
use crate::store::{self, audit, users};

/// The result of `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every event checks out.
    Intact {
        /// Events checked.
        events: i64,
        /// The head hash.
        head: String,
    },
    /// The first broken link.
    Broken(BrokenLink),
    /// Every link holds, but the chain no longer extends a signed checkpoint: events after it
    /// were removed (the chain is shorter than it was) or rewritten.
    Contradicted(Contradiction),
}

const PAGE: i64 = 1000;

impl Countersign {
    /// Recomputes the whole chain and reports the first broken link.
    ///
    /// On its own this cannot see the newest events removed together with the head row: what
    /// is left is a shorter chain, linked perfectly. [`Countersign::verify_audit_extending`]
    /// with signed checkpoints can.
    pub async fn verify_audit(&self) -> Result<Verification, Error> {
        self.verify_audit_extending(Vec::new()).await
    }

    /// Recomputes the whole chain, reports the first broken link, and proves that the chain
    /// still extends every checkpoint given (already verified against trusted keys): the event
    /// at each checkpoint's `seq` is there with the checkpoint's hash, and every link from the
    /// first event to the last holds. One pass, however many checkpoints.
    pub async fn verify_audit_extending(
        &self,
        checkpoints: Vec<SourcedCheckpoint>,
    ) -> Result<Verification, Error> {
        let mut v = ChainVerifier::new();
        let mut extends = ExtensionCheck::new(checkpoints);
        let mut after = 0;
        loop {
            let page = audit::page(self.db.reader(), after, PAGE).await?;
            if page.is_empty() {
                break;
            }
            for e in &page {
                if let Err(broken) = v.check(e) {
                    return Ok(Verification::Broken(broken));
                }
                if let Err(c) = extends.observe(e) {
                    return Ok(Verification::Contradicted(c));
                }
                after = e.seq;
            }
        }
        // A checkpoint past the end names what is missing better than the head row can.
        if let Err(c) = extends.finish(v.checked()) {
            return Ok(Verification::Contradicted(c));
        }
        // The head row must agree with the last event: a truncated chain is broken too (unless
        // whoever truncated it set the head row back as well, which only a checkpoint shows).
        let (head_seq, head_hash) = audit::head(self.db.reader()).await?;
        if head_seq != v.checked() || head_hash != v.head() {
            return Ok(Verification::Broken(BrokenLink {
                seq: v.checked() + 1,
                reason: format!(
                    "the chain ends at event {} but its head records event {head_seq}",
                    v.checked()
                ),
            }));
        }
        Ok(Verification::Intact {
            events: v.checked(),
            head: v.head().to_string(),
        })
    }

    /// Writes events as JSON lines (canonical JSON, one event per line): the whole chain, or
    /// one request's evidence. Returns how many were written.
    pub async fn export_audit(
        &self,
        request_id: Option<&str>,
        out: &mut (dyn Write + Send),
    ) -> Result<u64, Error> {
        let mut n = 0;
        let mut write = |e: &crate::domain::audit::AuditEvent| -> Result<(), Error> {
            let line = canonical_json(&serde_json::to_value(e).map_err(Error::internal)?);
            writeln!(out, "{line}").map_err(Error::internal)?;
            n += 1;
            Ok(())
        };
        match request_id {
            Some(id) => {
                let events = audit::for_request(self.db.reader(), id).await?;
                if events.is_empty() {
                    return Err(Error::NotFound(format!("no audit events for request {id}")));
                }
                events.iter().try_for_each(&mut write)?;
            }
            None => {
                let mut after = 0;
                loop {
                    let page = audit::page(self.db.reader(), after, PAGE).await?;
                    if page.is_empty() {
                        break;
                    }
                    for e in &page {
                        write(e)?;
                        after = e.seq;
                    }
                }
            }
        }
        Ok(n)
    }
}

/// Admins only: the audit trail names every person and agent, and carries approval evidence.
fn require_admin(who: &SignedIn) -> Result<(), Error> {
    if who.person.role.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "only admins can read the audit trail".into(),
        ))
    }
}

/// Events shown per page when the caller does not say.
pub const DEFAULT_PAGE: i64 = 50;
/// The most events one page may ask for.
pub const MAX_PAGE: i64 = 200;
/// The longest id or kind a filter accepts (ours are far shorter; this only bounds the input).
const MAX_FILTER_LEN: usize = 200;

/// What an admin searches the audit trail for, as typed in the filter form. Empty strings mean
/// "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// A request id.
    pub request_id: String,
    /// An agent id.
    pub agent_id: String,
    /// A person's user id: events they caused.
    pub person_id: String,
    /// An event kind, e.g. `grant.issued`.
    pub kind: String,
    /// From this time on, inclusive (see [`parse_bound`] for the forms accepted).
    pub from: String,
    /// Up to this time, inclusive of the day or minute given.
    pub to: String,
    /// Only events with `seq` below this (the "older" link); 0 for the newest.
    pub before: i64,
    /// At most this many (0: [`DEFAULT_PAGE`]).
    pub limit: i64,
}

/// One event of a listing, with the agent and person it concerns.
#[derive(Debug, Clone)]
pub struct ListedEvent {
    /// As stored.
    pub event: AuditEvent,
    /// The agent it concerns (its actor, the agent of its request, or named in its data).
    pub agent: Option<(String, Option<String>)>,
    /// The person who caused it (`user:<id>`), with their name when they still exist.
    pub person: Option<(String, Option<String>)>,
}

/// One page of a search, and the state of the whole chain.
#[derive(Debug, Clone)]
pub struct AuditListing {
    /// Newest first.
    pub events: Vec<ListedEvent>,
    /// The cursor for the next (older) page, when there is one.
    pub older: Option<i64>,
    /// Whether the chain checks out (and extends `checkpoint`).
    pub verification: Verification,
    /// This server's newest checkpoint, which the verification checked the chain against.
    pub checkpoint: Option<SignedCheckpoint>,
}

/// One request's evidence, in chain order, and the state of the whole chain.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The request.
    pub request_id: String,
    /// Its status now, if the request row still exists.
    pub status: Option<RequestStatus>,
    /// Intent, policy decision, approvals, grant, redemption, outcome…
    pub steps: Vec<TimelineStep>,
    /// Whether the chain checks out (and extends `checkpoint`).
    pub verification: Verification,
    /// This server's newest checkpoint, which the verification checked the chain against.
    pub checkpoint: Option<SignedCheckpoint>,
}

impl Countersign {
    /// Searches the audit trail (admins only), newest first, with the chain's verification.
    ///
    /// The verification recomputes the whole chain on every call: linear in its length (about
    /// a second per few hundred thousand events). Fine for now; a page that must stay fast on a
    /// very long chain would verify incrementally from a checkpoint instead.
    pub async fn audit_events(
        &self,
        who: &SignedIn,
        filter: &AuditFilter,
    ) -> Result<AuditListing, Error> {
        require_admin(who)?;
        let query = event_query(filter)?;
        let mut found = audit::search(self.db.reader(), &query).await?;
        // We asked for one more than a page: its presence says there is an older page.
        let page = usize::try_from(query.limit - 1).map_err(Error::internal)?;
        let older = if found.len() > page {
            found.truncate(page);
            found.last().map(|e| e.event.seq)
        } else {
            None
        };
        let mut names = Names::default();
        let mut events = Vec::with_capacity(found.len());
        for f in found {
            let agent = match event_agent(&f.event, f.request_agent_id.as_deref()) {
                Some(id) => {
                    self.learn_agent(&mut names, &id).await?;
                    let name = names.agents.get(&id).cloned();
                    Some((id, name))
                }
                None => None,
            };
            let person = match f.event.actor.strip_prefix("user:") {
                Some(id) => {
                    self.learn_person(&mut names, id).await?;
                    let name = names.people.get(id).map(|(n, _)| n.clone());
                    Some((id.to_string(), name))
                }
                None => None,
            };
            events.push(ListedEvent {
                event: f.event,
                agent,
                person,
            });
        }
        let (verification, checkpoint) = self.verify_for_page().await?;
        Ok(AuditListing {
            events,
            older,
            verification,
            checkpoint,
        })
    }

    /// One request's evidence as a timeline (admins only), with the chain's verification (see
    /// [`Countersign::audit_events`] on its cost).
    pub async fn audit_timeline(
        &self,
        who: &SignedIn,
        request_id: &str,
    ) -> Result<Timeline, Error> {
        require_admin(who)?;
        let request_id = request_id.trim();
        if request_id.is_empty() || request_id.len() > MAX_FILTER_LEN {
            return Err(Error::invalid("id", "a request id is required"));
        }
        let events = audit::for_request(self.db.reader(), request_id).await?;
        if events.is_empty() {
            return Err(Error::NotFound(format!(
                "no audit events for request {request_id}"
            )));
        }
        let status = store::requests::get(self.db.reader(), request_id)
            .await?
            .map(|r| r.status);
        let mut names = Names::default();
        for e in &events {
            if let Some(id) = e.actor.strip_prefix("user:") {
                self.learn_person(&mut names, id).await?;
            }
            if let Some(id) = e.actor.strip_prefix("agent:") {
                self.learn_agent(&mut names, id).await?;
            }
            if let Some(id) = e.data.get("agent_id").and_then(Value::as_str) {
                self.learn_agent(&mut names, id).await?;
            }
            if let Some(id) = e.data.get("user_id").and_then(Value::as_str) {
                self.learn_person(&mut names, id).await?;
            }
            for id in e
                .data
                .get("approvers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                self.learn_person(&mut names, id).await?;
            }
        }
        let steps = events.iter().flat_map(|e| describe(e, &names)).collect();
        let (verification, checkpoint) = self.verify_for_page().await?;
        Ok(Timeline {
            request_id: request_id.to_string(),
            status,
            steps,
            verification,
            checkpoint,
        })
    }

    /// The verification the admin pages show: the whole chain, and that it still extends this
    /// server's newest checkpoint. That one comes from our own file and was signed by our own
    /// key, so there is no key to choose; a verifier elsewhere uses `audit verify --checkpoint`.
    async fn verify_for_page(&self) -> Result<(Verification, Option<SignedCheckpoint>), Error> {
        let latest = self.latest_checkpoint().await?;
        let given = latest
            .iter()
            .map(|c| SourcedCheckpoint {
                checkpoint: c.clone(),
                source: format!("this server's {}", super::checkpoints::FILE_NAME),
            })
            .collect();
        Ok((self.verify_audit_extending(given).await?, latest))
    }

    /// The JSON lines `countersign audit export [--request ID]` writes, for an admin's
    /// download. Held in memory whole: fine for the chains we see; a very long one would be
    /// streamed instead.
    pub async fn export_audit_as(
        &self,
        who: &SignedIn,
        request_id: Option<&str>,
    ) -> Result<Vec<u8>, Error> {
        require_admin(who)?;
        if request_id.is_some_and(|id| id.len() > MAX_FILTER_LEN) {
            return Err(Error::invalid("request", "that is not a request id"));
        }
        let mut out = Vec::new();
        self.export_audit(request_id, &mut out).await?;
        Ok(out)
    }

    async fn learn_agent(&self, names: &mut Names, id: &str) -> Result<(), Error> {
        if !names.agents.contains_key(id) {
            if let Some(a) = crate::store::agents::get(self.db.reader(), id).await? {
                names.agents.insert(id.to_string(), a.name);
            }
        }
        Ok(())
    }

    /// Looks a person up once per page, with their passkeys (an approval names the passkey
    /// by id; its name is what its owner recognises).
    async fn learn_person(&self, names: &mut Names, id: &str) -> Result<(), Error> {
        if names.people.contains_key(id) {
            return Ok(());
        }
        let mut conn = self.db.read_conn().await?;
        if let Some(u) = users::get(&mut conn, id).await? {
            names
                .people
                .insert(id.to_string(), (u.display_name, u.email));
            for p in users::passkeys(&mut *conn, id).await? {
                names.passkeys.insert(p.id, p.name);
            }
        }
        Ok(())
    }
}

/// A filter as the store runs it; bad input is refused naming its field.
fn event_query(f: &AuditFilter) -> Result<audit::EventQuery, Error> {
    let text = |field: &str, value: &str| -> Result<String, Error> {
        let value = value.trim();
        if value.len() > MAX_FILTER_LEN || value.chars().any(char::is_control) {
            return Err(Error::invalid(
                field,
                format!("that is not a valid {field}"),
            ));
        }
        Ok(value.to_string())
    };
    let person = text("person", &f.person_id)?;
    let from = parse_bound("from", &f.from, false)?;
    let to = parse_bound("to", &f.to, true)?;
    if let (Some(from), Some(to)) = (from, to) {
        if from >= to {
            return Err(Error::invalid("to", "\"to\" must be after \"from\""));
        }
    }
    if f.before < 0 {
        return Err(Error::invalid(
            "before",
            "before is a position on the chain, 0 or more",
        ));
    }
    let limit = match f.limit {
        0 => DEFAULT_PAGE,
        n if (1..=MAX_PAGE).contains(&n) => n,
        _ => {
            return Err(Error::invalid(
                "limit",
                format!("limit is between 1 and {MAX_PAGE}"),
            ))
        }
    };
    Ok(audit::EventQuery {
        request_id: text("request", &f.request_id)?,
        agent_id: text("agent", &f.agent_id)?,
        actor: if person.is_empty() {
            person
        } else {
            format!("user:{person}")
        },
        kind: text("kind", &f.kind)?,
        from: from.unwrap_or(i64::MIN),
        to: to.unwrap_or(i64::MAX),
        before_seq: if f.before == 0 { i64::MAX } else { f.before },
        // One more than a page, to learn whether an older page exists.
        limit: limit + 1,
    })
}

/// Parses a time bound from the filter form, in UTC: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM` (what
/// `<input type="datetime-local">` sends), `YYYY-MM-DDTHH:MM:SS`, or RFC 3339 with an offset.
/// Empty means no bound. With `end`, the bound is exclusive and covers the whole day, minute
/// or second given, so "to 2024-05-01" includes all of that day.
pub fn parse_bound(field: &str, text: &str, end: bool) -> Result<Option<Millis>, Error> {
    use time::macros::format_description;
    use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime};
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let (start, span) = if let Ok(d) =
        Date::parse(text, format_description!("[year]-[month]-[day]"))
    {
        (d.midnight().assume_utc(), Duration::days(1))
    } else if let Ok(t) = PrimitiveDateTime::parse(
        text,
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ) {
        (t.assume_utc(), Duration::minutes(1))
    } else if let Ok(t) = PrimitiveDateTime::parse(
        text,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ) {
        (t.assume_utc(), Duration::seconds(1))
    } else if let Ok(t) =
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        (t, Duration::milliseconds(1))
    } else {
        return Err(Error::invalid(
            field,
            format!("{field} is a date (2024-05-01) or a date and time (2024-05-01T13:45), in UTC"),
        ));
    };
    let at = if end { start + span } else { start };
    Ok(Some((at.unix_timestamp_nanos() / 1_000_000) as Millis))
}

/// The agent an event concerns: the agent that caused it, else the agent of its request, else
/// one its data names (`agent.created`, `agent.suspended`…).
fn event_agent(e: &AuditEvent, request_agent: Option<&str>) -> Option<String> {
    e.actor
        .strip_prefix("agent:")
        .or(request_agent)
        .or_else(|| e.data.get("agent_id").and_then(Value::as_str))
        .map(str::to_string)
}

/// A download's file name: `countersign-audit.jsonl`, or with the request id when only its
/// events are exported. Only characters safe in a header's quoted string are kept.
pub fn export_filename(request_id: Option<&str>) -> String {
    match request_id {
        None => "countersign-audit.jsonl".into(),
        Some(id) => {
            let safe: String = id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .take(64)
                .collect();
            format!("countersign-audit-{safe}.jsonl")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::timeline::test_event as event;
    use serde_json::json;

    #[test]
    fn bounds_cover_the_whole_day_or_minute_given() {
        let day = parse_bound("from", "2024-05-01", false).unwrap().unwrap();
        assert_eq!(day, 1_714_521_600_000);
        let end = parse_bound("to", "2024-05-01", true).unwrap().unwrap();
        assert_eq!(end - day, 86_400_000);
        let minute = parse_bound("from", "2024-05-01T13:45", false)
            .unwrap()
            .unwrap();
        assert_eq!(minute, day + (13 * 60 + 45) * 60_000);
        let minute_end = parse_bound("to", "2024-05-01T13:45", true)
            .unwrap()
            .unwrap();
        assert_eq!(minute_end - minute, 60_000);
        let offset = parse_bound("from", "2024-05-01T15:45:00+02:00", false)
            .unwrap()
            .unwrap();
        assert_eq!(offset, minute);
        assert_eq!(parse_bound("from", "  ", false).unwrap(), None);
    }

    #[test]
    fn a_bad_bound_names_its_field() {
        for bad in ["yesterday", "2024-13-01", "2024-05-01 13:45"] {
            match parse_bound("to", bad, true) {
                Err(Error::InvalidRequest { field, .. }) => {
                    assert_eq!(field.as_deref(), Some("to"))
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn filters_are_checked_and_translated() {
        let q = event_query(&AuditFilter {
            person_id: "u1".into(),
            kind: " grant.issued ".into(),
            before: 40,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(q.actor, "user:u1");
        assert_eq!(q.kind, "grant.issued");
        assert_eq!(q.before_seq, 40);
        assert_eq!(q.limit, DEFAULT_PAGE + 1);
        assert_eq!((q.from, q.to), (i64::MIN, i64::MAX));
        let field = |f: AuditFilter| match event_query(&f) {
            Err(Error::InvalidRequest { field, .. }) => field.unwrap_or_default(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(AuditFilter {
                from: "2024-05-02".into(),
                to: "2024-05-01".into(),
                ..Default::default()
            }),
            "to"
        );
        assert_eq!(
            field(AuditFilter {
                limit: 1000,
                ..Default::default()
            }),
            "limit"
        );
        assert_eq!(
            field(AuditFilter {
                before: -1,
                ..Default::default()
            }),
            "before"
        );
        assert_eq!(
            field(AuditFilter {
                request_id: "x".repeat(500),
                ..Default::default()
            }),
            "request"
        );
    }

    #[test]
    fn the_agent_of_an_event_comes_from_actor_request_or_data() {
        let e = event("request.created", "agent:a1", json!({}));
        assert_eq!(event_agent(&e, Some("a2")).as_deref(), Some("a1"));
        let e = event("grant.issued", "system", json!({}));
        assert_eq!(event_agent(&e, Some("a2")).as_deref(), Some("a2"));
        let e = event("agent.created", "user:u1", json!({ "agent_id": "a3" }));
        assert_eq!(event_agent(&e, None).as_deref(), Some("a3"));
        assert_eq!(
            event_agent(&event("policy.applied", "cli", json!({})), None),
            None
        );
    }

    #[test]
    fn export_file_names_keep_only_safe_characters() {
        assert_eq!(export_filename(None), "countersign-audit.jsonl");
        assert_eq!(
            export_filename(Some("3f2a-9c")),
            "countersign-audit-3f2a-9c.jsonl"
        );
        assert_eq!(
            export_filename(Some("a\"; b\r\nX: y")),
            "countersign-audit-abXy.jsonl"
        );
    }
}
