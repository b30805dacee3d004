//! The audit trail (admins): every event on the chain, searchable by request, agent, person,
//! kind and time, with the chain's verification; and one request's evidence as a timeline
//! (intent, policy decision, each approval with its passkey and display hash, grant,
//! redemption, outcome). Both export the same JSON lines as `countersign audit export`.
//!
//! The filters live in the URL (a plain GET form), so a search works before the wasm loads and
//! can be linked to. This page shows what the server returns and decides nothing: the server
//! functions check that the caller is an admin and recompute the chain.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::{encode, failure};
use crate::api::{
    audit_events, audit_request, AuditEventItem, AuditFilter, AuditStep, ChainStatus,
};
use crate::ui::{Loading, ValueTable, When};

/// Where the whole chain downloads from.
const EXPORT: &str = "/api/ui/audit/export";

/// Kinds offered in the filter (any other may be typed).
const KINDS: &[&str] = &[
    "request.created",
    "approval.recorded",
    "request.approved",
    "request.denied",
    "request.cancelled",
    "request.expired",
    "grant.issued",
    "grant.redeemed",
    "grant.outcome",
    "grant.revoked",
    "grant.expired",
    "policy.applied",
    "settings.changed",
    "agent.created",
    "agent.suspended",
    "agent.resumed",
    "user.invited",
    "user.enrolled",
    "user.signed_in",
    "passkey.added",
    "passkey.renamed",
    "passkey.removed",
];

/// The list page's address for a filter, starting at `before` (0: the newest). Empty filters
/// are left out, so links stay short and readable.
pub fn audit_href(f: &AuditFilter, before: i64) -> String {
    let mut params: Vec<String> = [
        ("request", &f.request),
        ("agent", &f.agent),
        ("person", &f.person),
        ("kind", &f.kind),
        ("from", &f.from),
        ("to", &f.to),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={}", encode(v)))
    .collect();
    if before > 0 {
        params.push(format!("before={before}"));
    }
    if params.is_empty() {
        "/admin/audit".into()
    } else {
        format!("/admin/audit?{}", params.join("&"))
    }
}

/// Where one request's evidence downloads from.
pub fn export_href(request_id: &str) -> String {
    format!("{EXPORT}?request={}", encode(request_id))
}

/// The first characters of an id, for narrow columns (the full id is in the title).
fn short(id: &str) -> String {
    if id.chars().count() > 8 {
        format!("{}…", id.chars().take(8).collect::<String>())
    } else {
        id.to_string()
    }
}

/// `/admin/audit?request=…&agent=…&person=…&kind=…&from=…&to=…&before=…`
#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let filter = move || {
        let q = query.read();
        AuditFilter {
            request: q.get("request").unwrap_or_default(),
            agent: q.get("agent").unwrap_or_default(),
            person: q.get("person").unwrap_or_default(),
            kind: q.get("kind").unwrap_or_default(),
            from: q.get("from").unwrap_or_default(),
            to: q.get("to").unwrap_or_default(),
            before: q.get("before").and_then(|b| b.parse().ok()).unwrap_or(0),
        }
    };
    let listing = crate::api::page_resource(filter, audit_events);
    let export = move || {
        let f = filter();
        if f.request.is_empty() {
            EXPORT.to_string()
        } else {
            export_href(&f.request)
        }
    };
    let field = move |name: &'static str, label: &'static str, kind: &'static str| {
        let value = move || {
            let f = filter();
            match name {
                "request" => f.request,
                "agent" => f.agent,
                "person" => f.person,
                "kind" => f.kind,
                "from" => f.from,
                _ => f.to,
            }
        };
        let list = (name == "kind").then_some("audit-kinds");
        let placeholder = match kind {
            "datetime-local" => None,
            _ if name == "kind" => Some("any kind"),
            _ => Some("id"),
        };
        view! {
            <label>
                {label} " "
                <input type=kind name=name value=value list=list placeholder=placeholder/>
            </label>
        }
    };

    view! {
        <Title text="Audit"/>
        <super::AdminOnly>
            <section class="page audit">
                <div class="page-head">
                    <h1>"Audit trail"</h1>
                    <a href=export rel="external" download="">"Export JSON lines"</a>
                </div>
                <form class="filters audit-filters" method="get" action="/admin/audit">
                    {field("request", "Request", "text")}
                    {field("agent", "Agent", "text")}
                    {field("person", "Person", "text")}
                    {field("kind", "Kind", "text")}
                    {field("from", "From (UTC)", "datetime-local")}
                    {field("to", "To (UTC)", "datetime-local")}
                    <datalist id="audit-kinds">
                        {KINDS.iter().map(|k| view! { <option value=*k/> }).collect_view()}
                    </datalist>
                    <button type="submit">"Filter"</button>
                    <a href="/admin/audit">"Clear"</a>
                </form>
                <Transition fallback=Loading>
                    {move || Suspend::new(async move {
                        let f = filter();
                        match listing.await {
                            Ok(l) => {
                                let older = l.older.map(|before| view! {
                                    <a class="older" href=audit_href(&f, before)>"Older events →"</a>
                                });
                                let newest = (f.before > 0).then(|| view! {
                                    <a href=audit_href(&f, 0)>"← Newest"</a>
                                });
                                let body = if l.events.is_empty() {
                                    view! { <p class="empty">"No events match."</p> }.into_any()
                                } else {
                                    view! {
                                        <table class="audit">
                                            <thead>
                                                <tr>
                                                    <th scope="col">"#"</th>
                                                    <th scope="col">"When"</th>
                                                    <th scope="col">"Kind"</th>
                                                    <th scope="col">"Request"</th>
                                                    <th scope="col">"Agent"</th>
                                                    <th scope="col">"Person"</th>
                                                </tr>
                                            </thead>
                                            <tbody>
                                                {l.events.into_iter().map(|e| view! { <Row e filter=f.clone()/> }).collect_view()}
                                            </tbody>
                                        </table>
                                    }.into_any()
                                };
                                view! {
                                    <ChainBanner chain=l.chain/>
                                    {body}
                                    <nav class="paging" aria-label="Pages">{newest} " " {older}</nav>
                                }.into_any()
                            }
                            Err(e) => failure(e),
                        }
                    })}
                </Transition>
            </section>
        </super::AdminOnly>
    }
}

/// One event of the list; its agent, person and kind link to the list filtered by them.
#[component]
fn Row(e: AuditEventItem, filter: AuditFilter) -> impl IntoView {
    let by = |f: AuditFilter| audit_href(&f, 0);
    let kind_href = by(AuditFilter {
        kind: e.kind.clone(),
        ..filter.clone()
    });
    let request = e.request_id.clone().map(|id| {
        view! {
            <a href=format!("/admin/audit/request/{}", encode(&id)) title=id.clone()>
                <code>{short(&id)}</code>
            </a>
        }
    });
    let agent = e.agent_id.clone().map(|id| {
        let href = by(AuditFilter {
            agent: id.clone(),
            ..filter.clone()
        });
        let label = e.agent_name.clone().unwrap_or_else(|| short(&id));
        view! { <a href=href title=id>{label}</a> }
    });
    let person = match e.person_id.clone() {
        Some(id) => {
            let href = by(AuditFilter {
                person: id.clone(),
                ..filter.clone()
            });
            let label = e.person_name.clone().unwrap_or_else(|| short(&id));
            view! { <a href=href title=id>{label}</a> }.into_any()
        }
        // Not a person: say who it was (an agent, the policy, Countersign itself).
        None => view! { <span class="meta">{e.actor.clone()}</span> }.into_any(),
    };
    view! {
        <tr data-seq=e.seq.to_string()>
            <td data-label="#" class="seq">{e.seq}</td>
            <td data-label="When"><When ms=e.at/></td>
            <td data-label="Kind"><a href=kind_href><code>{e.kind}</code></a></td>
            <td data-label="Request">{request}</td>
            <td data-label="Agent">{agent}</td>
            <td data-label="Person">{person}</td>
        </tr>
    }
}

/// The chain's verification: a quiet line when it checks out, an alert naming the first bad
/// event when it does not.
#[component]
fn ChainBanner(chain: ChainStatus) -> impl IntoView {
    if chain.intact {
        view! {
            <p class="chain ok" role="status">
                {format!("Chain verified: {} events, head ", chain.events)}
                <code class="hash">{chain.head}</code>
                {chain.checkpoint.map(|c| view! { <br/>{format!("It extends {c}.")} })}
            </p>
        }
        .into_any()
    } else {
        let seq = chain.broken_seq.unwrap_or_default();
        view! {
            <div class="chain broken" role="alert">
                <strong>{format!("Chain verification FAILED at event #{seq}")}</strong>
                <p>{chain.reason.unwrap_or_default()}</p>
                <p>
                    {format!("Event #{seq} and every event after it cannot be trusted: the stored log was changed outside Countersign. ")}
                    "Run " <code>"countersign audit verify --checkpoint FILE|URL"</code> " with the signed checkpoints kept elsewhere (a monitor's copy), and compare with an earlier export."
                </p>
            </div>
        }
        .into_any()
    }
}

/// `/admin/audit/request/:id`
#[component]
pub fn AuditRequestPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let timeline = crate::api::page_resource(id, audit_request);
    view! {
        <Title text="Audit: request"/>
        <super::AdminOnly>
            <section class="page audit-request">
                <p><a href="/admin/audit">"← Audit trail"</a></p>
                <Transition fallback=Loading>
                    {move || Suspend::new(async move {
                        match timeline.await {
                            Ok(t) => {
                                let broken_at = t.chain.broken_seq;
                                let rid = t.request_id.clone();
                                view! {
                                    <h1>"Evidence for request " <code class="request-id">{rid.clone()}</code></h1>
                                    <ChainBanner chain=t.chain/>
                                    <p class="meta links">
                                        {t.status.map(|s| view! { <span class=format!("status {s}")>{s.as_str()}</span> " " })}
                                        <a href=format!("/requests/{}", encode(&rid))>"Open the request"</a>
                                        " · "
                                        <a href=export_href(&rid) rel="external" download="">"Export this request (JSON lines)"</a>
                                        " · "
                                        <a href=audit_href(&AuditFilter { request: rid.clone(), ..Default::default() }, 0)>"Its events in the list"</a>
                                    </p>
                                    <ol class="timeline">
                                        {t.steps.into_iter().map(|s| view! { <Step s broken_at/> }).collect_view()}
                                    </ol>
                                }.into_any()
                            }
                            Err(e) => failure(e),
                        }
                    })}
                </Transition>
            </section>
        </super::AdminOnly>
    }
}

/// One step of the timeline. Steps at or after a broken link are marked: their evidence is
/// shown, but the chain no longer vouches for it.
#[component]
fn Step(s: AuditStep, broken_at: Option<i64>) -> impl IntoView {
    let unverified = broken_at.is_some_and(|b| s.seq >= b);
    view! {
        <li class="step" class:unverified=unverified data-kind=s.kind.clone() data-seq=s.seq.to_string()>
            <h2>{s.title}</h2>
            <p class="meta">
                "#" {s.seq} " · " <When ms=s.at/> " · " {s.actor}
                {unverified.then(|| view! { " · " <strong class="denial">"not verified"</strong> })}
            </p>
            <dl>
                {s.facts.into_iter().map(|f| {
                    let value = match f.at {
                        Some(ms) => view! { <When ms/> }.into_any(),
                        None if f.key.ends_with("hash") || f.key.ends_with("_id") || f.key == "jti" || f.key == "challenge" => {
                            view! { <code class="hash">{f.value}</code> }.into_any()
                        }
                        None => view! { <span>{f.value}</span> }.into_any(),
                    };
                    view! { <dt>{f.label}</dt><dd data-key=f.key>{value}</dd> }
                }).collect_view()}
            </dl>
            <details class="evidence">
                <summary>"Evidence as stored"</summary>
                <ValueTable value=s.evidence/>
                <p class="meta">"Event hash " <code class="hash">{s.hash}</code></p>
            </details>
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_only_the_filters_set() {
        assert_eq!(audit_href(&AuditFilter::default(), 0), "/admin/audit");
        let f = AuditFilter {
            kind: "grant.issued".into(),
            person: "u 1".into(),
            ..Default::default()
        };
        assert_eq!(
            audit_href(&f, 0),
            "/admin/audit?person=u%201&kind=grant.issued"
        );
        assert_eq!(
            audit_href(&f, 42),
            "/admin/audit?person=u%201&kind=grant.issued&before=42"
        );
        let f = AuditFilter {
            from: "2024-05-01T13:45".into(),
            ..Default::default()
        };
        assert_eq!(audit_href(&f, 0), "/admin/audit?from=2024-05-01T13%3A45");
    }

    #[test]
    fn exports_and_ids_are_escaped_and_shortened() {
        assert_eq!(export_href("a&b"), "/api/ui/audit/export?request=a%26b");
        assert_eq!(short("0123456789"), "01234567…");
        assert_eq!(short("abc"), "abc");
    }
}
