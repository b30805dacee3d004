//! Every agent, for admins: who owns it, whether it may act, how it authenticates and when it
//! last did; suspend or resume it, rotate its API key (the new key is shown once) or register a
//! public key for it.
//!
//! The page only asks; the server functions behind it refuse anyone who is not an admin, and
//! the services decide what a key change retires (see `countersign::service::agent_admin`).

use leptos::prelude::*;
use leptos_meta::Title;

use super::agents::{copy_text, origin};
use super::failure;
use crate::api::{
    admin_agent_status, admin_agents, admin_rotate_agent_key, admin_set_agent_key, AdminAgentItem,
    AgentStatus, AgentStatusOut, AppError, RotatedKeyOut,
};
use crate::ui::{ErrorBox, Loading, When};

/// What the last action did, shown above the list (it outlives the list's reload).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// A rotated API key, shown once.
    Key { name: String, key: RotatedKeyOut },
    /// Anything else, in a sentence.
    Done(String),
}

/// Which destructive action is waiting for a second click.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirm {
    Suspend,
    Rotate,
}

/// `/admin/agents`
#[component]
pub fn AdminAgentsPage() -> impl IntoView {
    let version = RwSignal::new(0u64);
    let agents = crate::api::page_resource(move || version.get(), |_| admin_agents());
    let outcome = RwSignal::new(None::<Outcome>);
    view! {
        <Title text="All agents"/>
        <super::AdminOnly>
        <section class="page">
            <h1>"All agents"</h1>
            <p class="hint">"Every registered agent, newest first. Suspending one refuses its credentials at once, cancels its pending requests and revokes its grants. Changing its key retires the old one at once."</p>
            {move || outcome.get().map(|o| match o {
                Outcome::Key { name, key } => view! { <NewKey name key outcome/> }.into_any(),
                Outcome::Done(text) => view! { <p class="card outcome" role="status">{text}</p> }.into_any(),
            })}
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    match agents.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="empty">"No agents are registered yet."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="agents">
                                {list.into_iter().map(|a| view! { <AgentCard agent=a version outcome/> }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(e) => failure(e),
                    }
                })}
            </Transition>
        </section>
        </super::AdminOnly>
    }
}

fn status_sentence(name: &str, r: &AgentStatusOut) -> String {
    match (r.status, r.changed) {
        (AgentStatus::Suspended, true) => format!(
            "{name} is suspended: {} pending requests cancelled, {} grants revoked.",
            r.cancelled_requests, r.revoked_grants
        ),
        (AgentStatus::Suspended, false) => format!("{name} was already suspended."),
        (_, true) => format!("{name} is active again."),
        (_, false) => format!("{name} was not suspended."),
    }
}

#[component]
fn AgentCard(
    agent: AdminAgentItem,
    version: RwSignal<u64>,
    outcome: RwSignal<Option<Outcome>>,
) -> impl IntoView {
    let active = agent.status == AgentStatus::Active;
    let id = StoredValue::new(agent.id.clone());
    let name = StoredValue::new(agent.name.clone());
    let error = RwSignal::new(None::<AppError>);
    let confirming = RwSignal::new(None::<Confirm>);
    let busy = RwSignal::new(false);
    let jwk = RwSignal::new(String::new());
    let key_error = RwSignal::new(None::<AppError>);

    // Each action clears the last message, and on success reloads the list (which replaces
    // this card, so `busy` is released first).
    let set_status = move |to_active: bool| {
        busy.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            let result = admin_agent_status(id.get_value(), to_active).await;
            busy.set(false);
            match result {
                Ok(r) => {
                    outcome.set(Some(Outcome::Done(status_sentence(&name.get_value(), &r))));
                    version.update(|v| *v += 1);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let rotate = move || {
        busy.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            let result = admin_rotate_agent_key(id.get_value()).await;
            busy.set(false);
            match result {
                Ok(key) => {
                    outcome.set(Some(Outcome::Key {
                        name: name.get_value(),
                        key,
                    }));
                    version.update(|v| *v += 1);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let set_key = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        key_error.set(None);
        let text = jwk.get_untracked();
        leptos::task::spawn_local(async move {
            let result = admin_set_agent_key(id.get_value(), text).await;
            busy.set(false);
            match result {
                Ok(k) => {
                    outcome.set(Some(Outcome::Done(format!(
                        "{} now signs its requests with the key {} (its API key no longer works; {} grants revoked).",
                        name.get_value(),
                        k.jkt,
                        k.revoked_grants
                    ))));
                    version.update(|v| *v += 1);
                }
                Err(e) => key_error.set(Some(e)),
            }
        });
    };

    let key_label = if agent.key_type == "public_key" {
        "signed assertions"
    } else {
        "API key"
    };
    let jwk_id = format!("jwk-{}", agent.id);
    // The card is built from parts with their types erased (`into_any`): as one `view!` its
    // type nests deeper than rustc's query depth limit allows when it is laid out.
    let facts = view! {
        <dl>
            <dt>"Owner"</dt>
            <dd>{agent.owner_name} " " <span class="meta">{agent.owner_email}</span></dd>
            <dt>"Last active"</dt>
            <dd>{match agent.last_seen_at {
                Some(t) => view! { <When ms=t/> }.into_any(),
                None => "never".into_any(),
            }}</dd>
            <dt>"Registered"</dt>
            <dd><When ms=agent.created_at/></dd>
            <dt>"Waiting"</dt>
            <dd>{format!("{} pending requests", agent.pending_requests)}</dd>
            <dt>"Id"</dt>
            <dd><code>{agent.id.clone()}</code></dd>
            {agent.jkt.map(|j| view! {
                <dt>"Key thumbprint"</dt>
                <dd><code class="hash">{j}</code></dd>
            })}
        </dl>
    }
    .into_any();
    let actions = view! {
        <div class="actions">
            {if active {
                view! {
                    <button class="danger" disabled=move || busy.get()
                        on:click=move |_| confirming.set(Some(Confirm::Suspend))>"Suspend"</button>
                }.into_any()
            } else {
                view! {
                    <button disabled=move || busy.get() on:click=move |_| set_status(true)>"Resume"</button>
                }.into_any()
            }}
            <button disabled=move || busy.get()
                on:click=move |_| confirming.set(Some(Confirm::Rotate))>"Rotate API key"</button>
        </div>
    }
    .into_any();
    let confirm = move || {
        confirming.get().map(|c| {
            let (question, yes) = match c {
                Confirm::Suspend => (
                    "Suspend it? Its credentials are refused at once, its pending requests are cancelled and its grants revoked.",
                    "Suspend now",
                ),
                Confirm::Rotate => (
                    "Rotate its API key? The agent's current credential stops working at once; you will see the new key once.",
                    "Rotate now",
                ),
            };
            view! {
                <div class="confirm" role="alertdialog" aria-label=yes>
                    <p>{question}</p>
                    <button class="danger" disabled=move || busy.get() on:click=move |_| {
                        confirming.set(None);
                        match c {
                            Confirm::Suspend => set_status(false),
                            Confirm::Rotate => rotate(),
                        }
                    }>{yes}</button>
                    " "
                    <button on:click=move |_| confirming.set(None)>"Cancel"</button>
                </div>
            }
            .into_any()
        })
    };
    let key_form = view! {
        <details>
            <summary>"Set public key"</summary>
            <form on:submit=set_key>
                <label for=jwk_id.clone()>"Ed25519 public key (JWK)"</label>
                <textarea
                    id=jwk_id
                    name="jwk"
                    required
                    spellcheck="false"
                    placeholder=r#"{"kty":"OKP","crv":"Ed25519","x":"…"}"#
                    prop:value=move || jwk.get()
                    on:input=move |ev| jwk.set(event_target_value(&ev))
                ></textarea>
                <p class="hint">"The agent then signs its requests with the matching private key, and its API key stops working at once. Never paste a private key here."</p>
                {move || key_error.get().and_then(|e| e.for_field("jwk")).map(|m| view! { <p class="field-error">{m}</p> })}
                <button class="primary" type="submit" disabled=move || busy.get()>"Register key"</button>
                {move || key_error.get().filter(|e| e.for_field("jwk").is_none()).map(|e| view! { <ErrorBox error=e/> })}
            </form>
        </details>
    }
    .into_any();
    let callback = view! {
        <super::agents::Callback id=agent.id.clone() current=agent.callback_url.clone() version/>
        <super::agents::Parent id=agent.id.clone() current=agent.parent.clone() version/>
    }
    .into_any();
    view! {
        <li class="agent-card" data-agent-id=agent.id.clone()>
            <div class="agent-head">
                <strong>{agent.name.clone()}</strong>
                <span class=format!("status {}", agent.status)>{agent.status.as_str()}</span>
                <span class="tag">{key_label}</span>
            </div>
            {facts}
            {actions}
            {confirm}
            {key_form}
            {callback}
            {move || error.get().map(|e| view! { <ErrorBox error=e/> })}
        </li>
    }
}

/// A rotated API key, shown once, with a copy button and a curl example.
#[component]
fn NewKey(name: String, key: RotatedKeyOut, outcome: RwSignal<Option<Outcome>>) -> impl IntoView {
    let curl = format!(
        "curl -sS {}/api/v1/requests \\\n  -H 'Authorization: Bearer {}' \\\n  -H 'Content-Type: application/json' \\\n  -d '{{\"action\": {{\"type\": \"payments.transfer\", \"target\": \"bank-api\"}}, \"intent\": {{\"goal\": \"Pay invoice INV-1042\"}}}}'",
        origin(),
        key.api_key
    );
    let copied = RwSignal::new(false);
    let secret = StoredValue::new(key.api_key.clone());
    view! {
        <section class="card key-once" role="status">
            <h2>{format!("New API key for {name}")}</h2>
            <p><strong>"Copy it now: it is shown only once."</strong>
                {format!(" The agent's previous credential no longer works; {} grants were revoked.", key.revoked_grants)}</p>
            <p class="secret"><code id="api-key">{key.api_key.clone()}</code></p>
            <button on:click=move |_| {
                copy_text(&secret.get_value());
                copied.set(true);
            }>{move || if copied.get() { "Copied" } else { "Copy key" }}</button>
            " "
            <button on:click=move |_| outcome.set(None)>"Done"</button>
            <p>"Try it:"</p>
            <pre class="curl">{curl}</pre>
        </section>
    }
}
