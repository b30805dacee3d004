//! The inbox: requests waiting for this person's decision, newest first, kept live by a
//! server-sent event stream (`/api/ui/events`). Each event only says "something changed"; the
//! page then asks for its own inbox again, so the stream itself carries nothing anyone could
//! read about other people's requests.

use leptos::prelude::*;
use leptos_meta::Title;

use serde_json::{json, Value};

use super::failure;
use crate::api::{inbox, AppError, InboxItem};
use crate::passkey::{ceremony, Ceremony};
use crate::ui::{Countdown, ErrorBox, Loading, Risks, When};

/// `/`
#[component]
pub fn InboxPage() -> impl IntoView {
    let version = RwSignal::new(0u64);
    let items = crate::api::page_resource(move || version.get(), |_| inbox());
    let live = RwSignal::new("connecting");
    listen_for_changes(version, live);
    // The passkey code is its own wasm chunk: fetch it now, for a batch approval.
    Effect::new(|_| crate::passkey::preload());
    let batch = Batch {
        selected: RwSignal::new(Vec::new()),
        busy: RwSignal::new(false),
        outcome: RwSignal::new(None),
        error: RwSignal::new(None),
        refresh: version,
    };

    view! {
        <section class="page">
            <div class="page-head">
                <h1>"Waiting for you"</h1>
                <span class="live" data-state=move || live.get() aria-live="polite">
                    {move || match live.get() {
                        "live" => "Live",
                        "reconnecting" => "Reconnecting…",
                        _ => "",
                    }}
                </span>
            </div>
            <BatchBar batch/>
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    // The title is set here, from the loaded list, not from a closure over the
                    // resource outside this Transition: on the server that closure could run after
                    // the page's reactive owner was gone, and panic.
                    match items.await {
                        Ok(list) if list.is_empty() => view! {
                            <Title text="Inbox"/>
                            <p class="empty">"Nothing is waiting for your decision."</p>
                        }.into_any(),
                        Ok(list) => {
                            let count = list.len().to_string();
                            view! {
                            <Title text=format!("({count}) Inbox")/>
                            <ul class="inbox" data-count=count.clone()>
                                {list.into_iter().map(|item| view! { <Row item batch/> }).collect_view()}
                            </ul>
                        }.into_any()
                        }
                        Err(e) => view! { <Title text="Inbox"/> {failure(e)} }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// The rows selected for one batch approval, and what the last one did.
#[derive(Clone, Copy)]
struct Batch {
    /// `(request id, agent id + action type)` of each selected row.
    selected: RwSignal<Vec<(String, String)>>,
    busy: RwSignal<bool>,
    outcome: RwSignal<Option<String>>,
    error: RwSignal<Option<AppError>>,
    refresh: RwSignal<u64>,
}

/// Approve the selected rows (one agent's, one action type) with one passkey prompt.
#[component]
fn BatchBar(batch: Batch) -> impl IntoView {
    let Batch {
        selected,
        busy,
        outcome,
        error,
        refresh,
    } = batch;
    let approve = move |_| {
        let ids: Vec<String> = selected
            .get_untracked()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        busy.set(true);
        outcome.set(None);
        error.set(None);
        leptos::task::spawn_local(async move {
            let body = json!({ "request_ids": ids });
            match ceremony(
                Ceremony::Get,
                "/api/ui/batch/start",
                &body,
                "/api/ui/batch/finish",
            )
            .await
            {
                Ok(result) => {
                    outcome.set(Some(summary(&result)));
                    selected.set(Vec::new());
                    refresh.update(|v| *v += 1);
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    view! {
        <div class="batch" aria-live="polite">
            {move || outcome.get().map(|o| view! { <p class="outcome" role="status">{o}</p> })}
            {move || error.get().map(|e| view! { <ErrorBox error=e/> })}
            <Show when=move || selected.with(|s| s.len() >= 2)>
                <button class="primary batch-approve" on:click=approve disabled=move || busy.get()>
                    {move || if busy.get() {
                        "Waiting for your passkey…".to_string()
                    } else {
                        format!("Approve {} selected with one passkey", selected.with(Vec::len))
                    }}
                </button>
            </Show>
        </div>
    }
}

/// "Approved 4; skipped 1 (…)" from a batch's answer.
fn summary(result: &Value) -> String {
    let results = result["results"].as_array().cloned().unwrap_or_default();
    let approved = results.iter().filter(|r| r["status"] == "approved").count();
    let waiting = results.iter().filter(|r| r["status"] == "pending").count();
    let skipped: Vec<String> = results
        .iter()
        .filter_map(|r| r["skipped"].as_str().map(str::to_string))
        .collect();
    let mut out = format!("Approved {approved}.");
    if waiting > 0 {
        out.push_str(&format!(" {waiting} recorded, waiting for more approvals."));
    }
    if !skipped.is_empty() {
        out.push_str(&format!(
            " Skipped {}: {}",
            skipped.len(),
            skipped.join("; ")
        ));
    }
    out
}

#[component]
fn Row(item: InboxItem, batch: Batch) -> impl IntoView {
    let href = format!("/requests/{}", item.id);
    let key = format!("{} {}", item.agent_id, item.action_type);
    let id = item.id.clone();
    let selected = batch.selected;
    let checked = {
        let id = id.clone();
        move || selected.with(|s| s.iter().any(|(i, _)| *i == id))
    };
    // Only rows of the same agent and action type as those already selected can join them.
    let other_kind = {
        let key = key.clone();
        move || selected.with(|s| s.first().is_some_and(|(_, k)| *k != key))
    };
    let toggle = move |_| {
        let (id, key) = (id.clone(), key.clone());
        selected.update(|s| match s.iter().position(|(i, _)| *i == id) {
            Some(at) => {
                s.remove(at);
            }
            None => s.push((id, key)),
        })
    };
    view! {
        <li class="inbox-row" data-request-id=item.id.clone()>
            <input type="checkbox" class="select" aria-label="Select for a batch approval"
                prop:checked=checked on:change=toggle disabled=other_kind/>
            <a href=href>
                <span class="who">
                    <strong>{item.agent_name}</strong>
                    " wants to "
                    <code>{item.action_type}</code>
                    " on "
                    <code>{item.target}</code>
                </span>
                <span class="goal">{item.goal}</span>
                <span class="facts">
                    {item.environment.map(|e| view! { <span class="tag">{e}</span> })}
                    {item.amount.map(|a| view! { <span class="tag amount">{a}</span> })}
                    <span class="tag">
                        {format!("{} of {} approvals", item.approvals_received, item.approvals_required)}
                    </span>
                    <span class="asked">"Asked " <When ms=item.created_at/></span>
                    <span class="expires">"Expires in " <Countdown deadline=item.expires_at/></span>
                </span>
                <Risks risks=item.risks/>
            </a>
        </li>
    }
}

/// Bumps `version` whenever the server says an inbox may have changed (and when the stream
/// (re)connects, to catch up on anything missed meanwhile).
fn listen_for_changes(version: RwSignal<u64>, live: RwSignal<&'static str>) {
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        use send_wrapper::SendWrapper;
        use wasm_bindgen::closure::Closure;
        use wasm_bindgen::JsCast;

        let Ok(source) = web_sys::EventSource::new("/api/ui/events") else {
            live.set("reconnecting");
            return;
        };
        let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_| {
            version.update(|v| *v += 1);
        });
        let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            live.set("live");
            version.update(|v| *v += 1);
        });
        let watched = source.clone();
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            // The browser retries a dropped stream by itself; it gives up (CLOSED) only when
            // the server refuses it, i.e. the session ended (signed out elsewhere, or
            // deactivated by an admin). Then this page can do nothing more: go sign in.
            if watched.ready_state() == web_sys::EventSource::CLOSED {
                live.set("closed");
                if let Some(w) = web_sys::window() {
                    let _ = w.location().set_href("/sign-in?next=/");
                }
            } else {
                live.set("reconnecting");
            }
        });
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let keep = SendWrapper::new((source, on_message, on_open, on_error));
        on_cleanup(move || {
            let (source, ..) = &*keep;
            source.close();
        });
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (version, live);
}
