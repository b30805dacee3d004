//! The request page: what an approver reads before deciding, and where they decide.
//!
//! Order matters on a phone in a hurry: first who wants to do what where, then the risks, then
//! the decision, then the details. Everything comes from the stored request, rendered on the
//! server; the page sends the `display_hash` of what it showed with the decision, and the
//! server refuses a decision made on a page that no longer matches the request.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use serde::Deserialize;
use serde_json::{json, Value};

use super::failure;
use crate::api::{request_page, AppError, RequestStatus, RequestView as Page, Verdict};
use crate::passkey::{ceremony, Ceremony};
use crate::ui::{text_at, Countdown, ErrorBox, Loading, Risks, ValueTable, When};

/// `/requests/:id`
#[component]
pub fn RequestPage() -> impl IntoView {
    // The passkey code is its own wasm chunk: fetch it now, while the person reads.
    Effect::new(|_| crate::passkey::preload());
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let version = RwSignal::new(0u64);
    let page = crate::api::page_resource(move || (id(), version.get()), |(id, _)| request_page(id));
    // Outlive a reload of the page's data: after a decision (or a failed one) the page re-reads
    // the request, and the person should still see what just happened and why.
    let notes = Notes {
        outcome: RwSignal::new(None),
        error: RwSignal::new(None),
        refresh: version,
    };

    view! {
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(p) => view! { <Shown page=p notes/> }.into_any(),
                    Err(e) => view! { <Title text="Request"/> {failure(e)} }.into_any(),
                }
            })}
        </Transition>
    }
}

/// What the decision panel reports, kept across reloads of the request.
#[derive(Clone, Copy)]
struct Notes {
    outcome: RwSignal<Option<String>>,
    error: RwSignal<Option<AppError>>,
    refresh: RwSignal<u64>,
}

#[component]
fn Shown(page: Page, notes: Notes) -> impl IntoView {
    let shown = page.shown.clone();
    let req = shown.request.clone();
    let action_type = text_at(&req, &["action", "type"]);
    let target = text_at(&req, &["action", "target"]);
    let operation = text_at(&req, &["action", "operation"]);
    let goal = text_at(&req, &["intent", "goal"]);
    let rationale = text_at(&req, &["intent", "rationale"]);
    let params = req.pointer("/action/params").cloned();
    let context = req.get("context").cloned().unwrap_or(Value::Null);
    let delegation = context
        .get("delegation")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let amount = context
        .get("amount")
        .map(|a| format!("{} {}", text_at(a, &["value"]), text_at(a, &["currency"])));
    let other_context = match &context {
        Value::Object(map) => {
            let rest: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| {
                    !["environment", "data_sensitivity", "amount", "delegation"]
                        .contains(&k.as_str())
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!rest.is_empty()).then_some(Value::Object(rest))
        }
        _ => None,
    };
    let received = page
        .decisions
        .iter()
        .filter(|d| d.decision == Verdict::Approved)
        .count();
    let title = format!("{} · {}", shown.agent_name, action_type);

    view! {
        <Title text=title/>
        <article class="request" data-status=page.status.as_str() data-display-hash=page.display_hash.clone()>
            <header class="summary">
                <p class="status-line">
                    <span class=format!("status {}", page.status)>{page.status.label()}</span>
                    {(page.status == RequestStatus::Pending).then(|| view! {
                        " · expires in " <Countdown deadline=page.expires_at/>
                    })}
                </p>
                <h1>
                    <span class="agent">{shown.agent_name.clone()}</span>
                    " wants to "
                    <code>{action_type.clone()}</code>
                    " on "
                    <code>{target.clone()}</code>
                </h1>
                {(!operation.is_empty()).then(|| view! { <p class="operation"><code>{operation.clone()}</code></p> })}
                {(!goal.is_empty()).then(|| view! { <p class="goal">{goal.clone()}</p> })}
            </header>

            <Risks risks=page.risks.clone()/>

            <DecisionPanel page=page.clone() notes/>

            <section class="card">
                <h2>"Intent"</h2>
                <dl>
                    <dt>"Goal"</dt>
                    <dd>{if goal.is_empty() { "(not given)".to_string() } else { goal }}</dd>
                    <dt>"Rationale"</dt>
                    <dd>{if rationale.is_empty() { "(not given)".to_string() } else { rationale }}</dd>
                </dl>
            </section>

            <section class="card">
                <h2>"Parameters"</h2>
                {match params {
                    Some(p) => view! { <ValueTable value=p/> }.into_any(),
                    None => view! { <p class="none">"No parameters."</p> }.into_any(),
                }}
            </section>

            <section class="card">
                <h2>"Context"</h2>
                <dl>
                    <dt>"Environment"</dt>
                    <dd>{or_unset(text_at(&context, &["environment"]))}</dd>
                    <dt>"Data sensitivity"</dt>
                    <dd>{or_unset(text_at(&context, &["data_sensitivity"]))}</dd>
                    <dt>"Amount"</dt>
                    <dd>{amount.unwrap_or_else(|| "(none)".into())}</dd>
                </dl>
                {other_context.map(|c| view! { <ValueTable value=c/> })}
                <h3>"Delegation chain"</h3>
                <super::delegation_chain::DelegationChain delegation agent_name=shown.agent_name.clone() lineage=shown.lineage.clone()/>
            </section>

            {shown.releases.clone().map(|releases| view! {
                <section class="card releases" id="releases">
                    <h2>"Approving releases"</h2>
                    <p>{releases}</p>
                    <p class="hint">"Countersign creates it for this task only and removes it when the task ends."</p>
                </section>
            })}
            <section class="card">
                <h2>"Why approval is needed"</h2>
                <p>"Policy rule " <code>{shown.rule_id.clone()}</code> ": " {shown.explanation.clone()}</p>
                <p>{format!("{received} of {} approvals received.", shown.approvals_required)}</p>
                {(!page.decisions.is_empty()).then(|| view! {
                    <ul class="decisions">
                        {page.decisions.iter().cloned().map(|d| view! {
                            <li>{d.who} " " {d.decision.as_str()} " " <When ms=d.at/></li>
                        }).collect_view()}
                    </ul>
                })}
                {page.denial.clone().map(|d| view! { <p class="denial">"Reason: " {d}</p> })}
            </section>

            <section class="card">
                <h2>"Agent"</h2>
                <dl>
                    <dt>"Name"</dt>
                    <dd>{shown.agent_name.clone()}</dd>
                    <dt>"Id"</dt>
                    <dd><code>{shown.agent_id.clone()}</code></dd>
                    <dt>"Owner"</dt>
                    <dd>{shown.owner.clone()}</dd>
                </dl>
                <h3>"Recent requests"</h3>
                {if page.recent.is_empty() {
                    view! { <p class="none">"This is the agent's first request."</p> }.into_any()
                } else {
                    view! {
                        <ul class="recent">
                            {page.recent.iter().cloned().map(|r| view! {
                                <li>
                                    <a href=format!("/requests/{}", r.id)>
                                        <code>{r.action_type}</code> " on " <code>{r.target}</code>
                                    </a>
                                    " · " <span class=format!("status {}", r.status)>{r.status.as_str()}</span>
                                    " · " <When ms=r.created_at/>
                                </li>
                            }).collect_view()}
                        </ul>
                    }.into_any()
                }}
            </section>

            <footer class="binding">
                <p>"Requested " <When ms=page.created_at/></p>
                <p>"Action hash " <code class="hash">{shown.action_hash.clone()}</code></p>
                <p>"Display hash " <code class="hash">{page.display_hash.clone()}</code></p>
            </footer>
        </article>
    }
}

fn or_unset(s: String) -> String {
    if s.is_empty() {
        "(not given)".into()
    } else {
        s
    }
}

/// Approve or deny, each with a passkey. The approve button unlocks only after the page has
/// been open `approve_delay_ms` (a guard against approving on reflex).
#[component]
fn DecisionPanel(page: Page, notes: Notes) -> impl IntoView {
    let Notes {
        outcome,
        error,
        refresh,
    } = notes;
    let reports = move || {
        view! {
            {move || outcome.get().map(|o| view! { <p class="outcome" role="status">{o}</p> })}
            {move || error.get().map(|e| view! { <ErrorBox error=e/> })}
        }
    };
    if page.status != RequestStatus::Pending || !page.can_decide {
        let text = match page.status {
            RequestStatus::Pending => page
                .why_not
                .clone()
                .unwrap_or_else(|| "You cannot decide this request.".into()),
            RequestStatus::Approved => "This request was approved; the agent has its grant.".into(),
            RequestStatus::Denied => "This request was denied; the agent was told why.".into(),
            RequestStatus::Expired => {
                "This request expired before enough approvals arrived. Nothing was granted.".into()
            }
            RequestStatus::Cancelled => "The agent cancelled this request.".into(),
        };
        return view! {
            <section class="card decide closed">
                {reports()}
                <p class="state">{text}</p>
            </section>
        }
        .into_any();
    }

    let id = page.shown.request_id.clone();
    let display_hash = page.display_hash.clone();
    let busy = RwSignal::new(false);
    let reason_code = RwSignal::new(String::new());
    let reason = RwSignal::new(String::new());
    let denying = RwSignal::new(false);
    let unlocked = RwSignal::new(page.approve_delay_ms <= 0);
    #[cfg(feature = "hydrate")]
    if page.approve_delay_ms > 0 {
        let delay = std::time::Duration::from_millis(page.approve_delay_ms as u64);
        set_timeout(move || unlocked.set(true), delay);
    }

    let decide = move |decision: Value| {
        busy.set(true);
        error.set(None);
        outcome.set(None);
        let id = id.clone();
        let start = format!("/api/ui/requests/{id}/decision/start");
        let finish = format!("/api/ui/requests/{id}/decision/finish");
        let mut body = decision;
        body["display_hash"] = json!(display_hash.clone());
        leptos::task::spawn_local(async move {
            match ceremony(Ceremony::Get, &start, &body, &finish).await {
                Ok(result) => {
                    let status = result
                        .get("status")
                        .and_then(|s| RequestStatus::deserialize(s).ok());
                    outcome.set(Some(match status {
                        Some(RequestStatus::Approved) => {
                            "Approved. The agent has its grant.".into()
                        }
                        Some(RequestStatus::Denied) => "Denied. The agent has been told.".into(),
                        _ => "Your approval is recorded; more approvals are needed.".into(),
                    }));
                    busy.set(false);
                    refresh.update(|v| *v += 1);
                }
                Err(e) => {
                    // A cancelled passkey prompt changes nothing: the buttons come back. A
                    // request that expired or was decided meanwhile is re-read, so the page
                    // shows where it stands, with this error above.
                    if matches!(
                        e,
                        AppError::Expired(_) | AppError::NotFound(_) | AppError::Conflict(_)
                    ) {
                        refresh.update(|v| *v += 1);
                    }
                    error.set(Some(e));
                    busy.set(false);
                }
            }
        });
    };
    let limits = Limits::new(&page);
    let approve = {
        let decide = decide.clone();
        move |_| {
            let mut body = json!({ "decision": "approve" });
            limits.add_to(&mut body);
            decide(body)
        }
    };
    let deny = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let code = reason_code.get_untracked();
        if code.is_empty() {
            error.set(Some(AppError::Invalid {
                field: "reason_code".into(),
                message: "Choose a reason: the agent receives it.".into(),
            }));
            return;
        }
        let text = reason.get_untracked().trim().to_string();
        let mut body = json!({ "decision": "deny", "reason_code": code });
        if !text.is_empty() {
            body["reason"] = json!(text);
        }
        decide(body)
    };
    let reasons = page.deny_reasons.clone();

    view! {
        <section class="card decide" aria-label="Decision">
            {reports()}
            <div class="buttons">
                <button
                    class="primary approve"
                    on:click=approve
                    disabled=move || busy.get() || !unlocked.get()
                    title=move || if unlocked.get() { "" } else { "Read the request first" }
                >
                    {move || if busy.get() { "Waiting for your passkey…" } else { "Approve with passkey" }}
                </button>
                <button
                    class="danger"
                    on:click=move |_| denying.update(|d| *d = !*d)
                    disabled=move || busy.get()
                    aria-expanded=move || denying.get().to_string()
                >
                    "Deny…"
                </button>
            </div>
            <LimitsForm offer=page.offer.clone() limits/>
            <Show when=move || denying.get()>
                <form class="deny" on:submit=deny.clone()>
                    <label for="reason_code">"Why? The agent receives this."</label>
                    <select id="reason_code" name="reason_code" required bind:value=reason_code>
                        <option value="">"Choose a reason"</option>
                        {reasons
                            .iter()
                            .cloned()
                            .map(|(code, label)| view! { <option value=code>{label}</option> })
                            .collect_view()}
                    </select>
                    <label for="reason">"Anything to add (optional)"</label>
                    <textarea id="reason" name="reason" maxlength="1000" bind:value=reason></textarea>
                    <button class="danger" type="submit" disabled=move || busy.get()>
                        "Deny with passkey"
                    </button>
                </form>
            </Show>
        </section>
    }
    .into_any()
}

/// What the approver typed to narrow the approval or make it standing: the inputs of
/// [`LimitsForm`], read when they approve. Empty means "as asked".
#[derive(Clone, Copy)]
struct Limits {
    amount: RwSignal<String>,
    ttl: RwSignal<String>,
    standing: RwSignal<bool>,
    uses: RwSignal<String>,
    minutes: RwSignal<String>,
    standing_amount: RwSignal<String>,
    pins: RwSignal<Vec<String>>,
}

impl Limits {
    fn new(page: &Page) -> Self {
        let offer = &page.offer;
        let max_minutes = offer.standing_max_seconds.unwrap_or(0) / 60;
        Limits {
            amount: RwSignal::new(String::new()),
            ttl: RwSignal::new(String::new()),
            standing: RwSignal::new(false),
            uses: RwSignal::new(offer.standing_max_uses.min(5).to_string()),
            minutes: RwSignal::new(max_minutes.clamp(1, 60).to_string()),
            standing_amount: RwSignal::new(
                offer
                    .amount
                    .as_ref()
                    .map(|(v, _)| v.clone())
                    .unwrap_or_default(),
            ),
            pins: RwSignal::new(offer.params.clone()),
        }
    }

    /// Adds `narrow` and `standing` to an approval's body, as typed; the server checks them
    /// and names the field of anything that would widen.
    fn add_to(&self, body: &mut Value) {
        let text = |s: RwSignal<String>| {
            Some(s.get_untracked().trim().to_string()).filter(|t| !t.is_empty())
        };
        let mut narrow = json!({});
        if let Some(amount) = text(self.amount) {
            narrow["amount_max"] = json!(amount);
        }
        if let Some(ttl) = text(self.ttl) {
            narrow["grant_ttl_seconds"] = json!(ttl.parse::<u64>().unwrap_or(0));
        }
        if narrow.as_object().is_some_and(|o| !o.is_empty()) {
            body["narrow"] = narrow;
        }
        if self.standing.get_untracked() {
            let number = |s: RwSignal<String>| s.get_untracked().trim().parse::<u64>().unwrap_or(0);
            let mut standing = json!({
                "pin": self.pins.get_untracked(),
                "uses": number(self.uses),
                "valid_for_seconds": number(self.minutes) * 60,
            });
            if let Some(amount) = text(self.standing_amount) {
                standing["amount_max"] = json!(amount);
            }
            body["standing"] = standing;
        }
    }
}

/// Approve for less than asked, or also for similar requests later: a lower amount cap, a
/// shorter grant, and (where the rule allows) a bounded standing approval. Folded away: most
/// approvals are plain.
#[component]
fn LimitsForm(offer: crate::api::TermsOffer, limits: Limits) -> impl IntoView {
    let currency = offer
        .amount
        .as_ref()
        .map(|(_, c)| c.clone())
        .unwrap_or_default();
    let asked = offer
        .amount
        .as_ref()
        .map(|(v, _)| v.clone())
        .unwrap_or_default();
    let ttl = offer.grant_ttl_seconds.to_string();
    let max_minutes = offer.standing_max_seconds.map(|s| s / 60);
    let has_amount = offer.amount.is_some();
    view! {
        <details class="limits">
            <summary>"Approve with limits…"</summary>
            {offer.can_cap_amount.then(|| view! {
                <label for="narrow-amount">{format!("Cap the amount at ({currency})")}</label>
                <input id="narrow-amount" inputmode="decimal" placeholder=asked bind:value=limits.amount/>
            })}
            <label for="narrow-ttl">"Grant valid for (seconds)"</label>
            <input id="narrow-ttl" inputmode="numeric" placeholder=ttl bind:value=limits.ttl/>
            {max_minutes.map(|max| {
                let currency = currency.clone();
                view! {
                    <label class="check">
                        <input id="standing-on" type="checkbox" bind:checked=limits.standing/>
                        " Also approve this agent's similar requests without asking"
                    </label>
                    <Show when=move || limits.standing.get()>
                        <fieldset class="standing">
                            <label for="standing-uses">{format!("Uses (at most {})", offer.standing_max_uses)}</label>
                            <input id="standing-uses" inputmode="numeric" bind:value=limits.uses/>
                            <label for="standing-minutes">{format!("For minutes (at most {max})")}</label>
                            <input id="standing-minutes" inputmode="numeric" bind:value=limits.minutes/>
                            {has_amount.then(|| view! {
                                <label for="standing-amount">{format!("Each at most ({currency})")}</label>
                                <input id="standing-amount" inputmode="decimal" bind:value=limits.standing_amount/>
                            })}
                            {(!offer.params.is_empty()).then(|| view! {
                                <p class="hint">"Same action, target and operation; these parameters must stay as they are now:"</p>
                                {offer.params.iter().cloned().map(|name| {
                                    let checked = {
                                        let name = name.clone();
                                        move || limits.pins.with(|p| p.contains(&name))
                                    };
                                    let toggle = {
                                        let name = name.clone();
                                        move |_| limits.pins.update(|p| {
                                            if let Some(i) = p.iter().position(|n| *n == name) {
                                                p.remove(i);
                                            } else {
                                                p.push(name.clone());
                                            }
                                        })
                                    };
                                    view! {
                                        <label class="check">
                                            <input type="checkbox" name="pin" value=name.clone() prop:checked=checked on:change=toggle/>
                                            " " <code>{name}</code>
                                        </label>
                                    }.into_any()
                                }).collect_view()}
                            })}
                        </fieldset>
                    </Show>
                }.into_any()
            })}
        </details>
    }
    .into_any()
}
