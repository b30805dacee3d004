//! My agents: their status and last activity; register a new one (its API key is shown once,
//! with a copy button and a curl example); suspend or resume; set or clear its callback URL
//! (Countersign POSTs a signed notice there when one of its requests is decided).
//!
//! Registering is an `ActionForm`: before the wasm loads the browser posts it, and the key
//! comes back to this page once ([`registered_agent`]).

use leptos::prelude::*;
use leptos_meta::Title;

use super::failure;
use crate::api::{
    my_agents, registered_agent, set_agent_active, AgentItem, AgentStatus, AppError, CreateAgent,
    NewAgent, SetAgentCallback, SetAgentParent,
};
use crate::ui::{ErrorBox, Loading, When};

/// `/agents`
#[component]
pub fn AgentsPage() -> impl IntoView {
    let version = RwSignal::new(0u64);
    let register = ServerAction::<CreateAgent>::new();
    // Reloaded after every change here and after every registration.
    let agents = crate::api::page_resource(
        move || (version.get(), register.version().get()),
        |_| my_agents(),
    );
    let handed_over = crate::api::page_resource(|| (), |_| registered_agent());
    let name = RwSignal::new(String::new());
    let error = move || register.value().get().and_then(Result::err);
    let created = move || register.value().get().and_then(Result::ok);
    Effect::new(move || {
        if created().is_some() {
            name.set(String::new());
        }
    });

    view! {
        <Title text="Agents"/>
        <section class="page">
            <h1>"My agents"</h1>
            {move || created().map(|a| view! { <KeyOnce agent=a/> })}
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    handed_over.await.ok().flatten().map(|a| view! { <KeyOnce agent=a/> })
                })}
            </Transition>
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    match agents.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="empty">"You have no agents yet. Register one below."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="agents">
                                {list.into_iter().map(|a| view! { <Row agent=a version/> }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(e) => failure(e),
                    }
                })}
            </Transition>
            <ActionForm action=register attr:class="card" attr:id="register-agent">
                <h2>"Register an agent"</h2>
                <label for="agent-name">"Name"</label>
                <input id="agent-name" name="name" required maxlength="100" placeholder="invoice-bot" bind:value=name/>
                {move || error().and_then(|e| e.for_field("name")).map(|m| view! { <p class="field-error">{m}</p> })}
                <button class="primary" type="submit" disabled=move || register.pending().get()>"Register"</button>
                {move || error().filter(|e| e.for_field("name").is_none()).map(|e| view! { <ErrorBox error=e/> })}
            </ActionForm>
        </section>
    }
}

#[component]
fn Row(agent: AgentItem, version: RwSignal<u64>) -> impl IntoView {
    let active = agent.status == AgentStatus::Active;
    let error = RwSignal::new(None::<AppError>);
    let id = agent.id.clone();
    let toggle = move |_| {
        let id = id.clone();
        leptos::task::spawn_local(async move {
            match set_agent_active(id, !active).await {
                Ok(()) => version.update(|v| *v += 1),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <li class="agent-row" data-agent-id=agent.id.clone()>
            <strong>{agent.name}</strong>
            " "
            <span class=format!("status {}", agent.status)>{agent.status.as_str()}</span>
            <span class="meta">
                <code>{agent.id.clone()}</code>
                " · " {if agent.key_type == "api_key" { "API key" } else { "public key" }}
                " · last active "
                {match agent.last_seen_at {
                    Some(t) => view! { <When ms=t/> }.into_any(),
                    None => "never".into_any(),
                }}
            </span>
            <button on:click=toggle class=if active { "danger" } else { "" }>
                {if active { "Suspend" } else { "Resume" }}
            </button>
            {move || error.get().map(|e| view! { <ErrorBox error=e/> })}
            <Callback id=agent.id.clone() current=agent.callback_url.clone() version/>
            <Parent id=agent.id.clone() current=agent.parent.clone() version/>
        </li>
    }
}

/// The agent's callback URL: edit and save, or save it empty to clear it. An `ActionForm`, so it
/// posts before the wasm loads too.
#[component]
pub(crate) fn Callback(
    id: String,
    current: Option<String>,
    version: RwSignal<u64>,
) -> impl IntoView {
    let save = ServerAction::<SetAgentCallback>::new();
    Effect::new(move || {
        if let Some(Ok(_)) = save.value().get() {
            version.update(|v| *v += 1);
        }
    });
    let input_id = format!("callback-{id}");
    view! {
        <ActionForm action=save attr:class="callback">
            <input type="hidden" name="id" value=id.clone()/>
            <label for=input_id.clone()>"Callback URL"</label>
            <input id=input_id type="url" name="url" maxlength="2048"
                placeholder="https://agent.example.com/countersign" value=current.unwrap_or_default()/>
            <button type="submit" disabled=move || save.pending().get()>"Save callback"</button>
            {move || save.value().get().and_then(Result::err).map(|e| view! { <ErrorBox error=e/> })}
        </ActionForm>
    }
}

/// The agent's parent: registered as a sub-agent of another agent (by id), or cleared by
/// saving it empty. An `ActionForm`, so it posts before the wasm loads too.
#[component]
pub(crate) fn Parent(
    id: String,
    current: Option<crate::api::AgentRef>,
    version: RwSignal<u64>,
) -> impl IntoView {
    let save = ServerAction::<SetAgentParent>::new();
    Effect::new(move || {
        if let Some(Ok(_)) = save.value().get() {
            version.update(|v| *v += 1);
        }
    });
    let error = move || save.value().get().and_then(Result::err);
    let input_id = format!("parent-{id}");
    let shown = current.as_ref().map(|p| match &p.name {
        Some(name) => format!("Sub-agent of {name} ({}).", p.id),
        None => format!("Sub-agent of {}.", p.id),
    });
    view! {
        <ActionForm action=save attr:class="parent">
            <input type="hidden" name="id" value=id.clone()/>
            {shown.map(|s| view! { <p class="meta parent-of">{s}</p> })}
            <label for=input_id.clone()>"Sub-agent of (agent id)"</label>
            <input id=input_id name="parent" maxlength="64" placeholder="empty: acts for its owner directly"
                value=current.map(|p| p.id).unwrap_or_default()/>
            <button type="submit" disabled=move || save.pending().get()>"Save parent"</button>
            {move || error().and_then(|e| e.for_field("parent")).map(|m| view! { <p class="field-error">{m}</p> })}
            {move || error().filter(|e| e.for_field("parent").is_none()).map(|e| view! { <ErrorBox error=e/> })}
        </ActionForm>
    }
}

/// The new agent's API key, shown once.
#[component]
fn KeyOnce(agent: NewAgent) -> impl IntoView {
    let origin = origin();
    let curl = format!(
        "curl -sS {origin}/api/v1/requests \\\n  -H 'Authorization: Bearer {}' \\\n  -H 'Content-Type: application/json' \\\n  -d '{{\"action\": {{\"type\": \"payments.transfer\", \"target\": \"bank-api\"}}, \"intent\": {{\"goal\": \"Pay invoice INV-1042\"}}}}'",
        agent.api_key
    );
    let copied = RwSignal::new(false);
    let key = agent.api_key.clone();
    let copy = move |_| {
        copy_text(&key);
        copied.set(true);
    };
    view! {
        <section class="card key-once" role="status">
            <h2>{format!("{} is registered", agent.name)}</h2>
            <p><strong>"Copy its API key now: it is shown only once."</strong></p>
            <p class="secret"><code id="api-key">{agent.api_key.clone()}</code></p>
            <button on:click=copy>{move || if copied.get() { "Copied" } else { "Copy key" }}</button>
            <p>"Try it:"</p>
            <pre class="curl">{curl}</pre>
        </section>
    }
}

/// This site's origin in the browser (empty while rendering on the server).
pub(crate) fn origin() -> String {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window()
            .and_then(|w| w.location().origin().ok())
            .unwrap_or_default()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        String::new()
    }
}

/// Copies text to the clipboard (in the browser).
pub(crate) fn copy_text(text: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(w) = web_sys::window() {
        let _ = w.navigator().clipboard().write_text(text);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = text;
}
