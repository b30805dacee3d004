//! Standing approvals: what an owner (an admin: anyone) has approved ahead of time, with the
//! uses and time left, and a one-click revoke. Revoking is an `ActionForm`, so it works before
//! the wasm loads; it is final at once: no later request is approved by it.

use leptos::prelude::*;
use leptos_meta::Title;

use super::failure;
use crate::api::{standing_approvals, RevokeStanding, StandingItem};
use crate::ui::{ErrorBox, Loading, When};

/// `/standing`
#[component]
pub fn StandingPage() -> impl IntoView {
    let revoke = ServerAction::<RevokeStanding>::new();
    let list = crate::api::page_resource(move || revoke.version().get(), |_| standing_approvals());
    view! {
        <Title text="Standing approvals"/>
        <section class="page">
            <h1>"Standing approvals"</h1>
            <p class="hint">"Requests inside one of these are approved without asking you, until its uses or time run out."</p>
            {move || revoke.value().get().and_then(Result::err).map(|e| view! { <ErrorBox error=e/> })}
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(items) if items.is_empty() => view! {
                            <p class="empty">"No standing approvals. You can give one when you approve a request whose rule allows it."</p>
                        }.into_any(),
                        Ok(items) => view! {
                            <ul class="standing-list">
                                {items.into_iter().map(|s| view! { <Row item=s revoke/> }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(e) => failure(e),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn Row(item: StandingItem, revoke: ServerAction<RevokeStanding>) -> impl IntoView {
    let active = item.state == "active";
    let id = item.id.clone();
    let state = match item.state.as_str() {
        "active" => "active",
        "used_up" => "used up",
        "expired" => "expired",
        _ => "revoked",
    };
    view! {
        <li class="card standing-row" data-standing-id=item.id.clone() data-state=item.state.clone()>
            <p>
                <strong>{item.agent_name}</strong> " · " {item.covers}
            </p>
            <p class="meta">
                <span class=format!("status {}", item.state)>{state}</span>
                {format!(" · {} of {} uses left · ", item.uses_left, item.uses_total)}
                {if active { "until " } else { "ran until " }} <When ms=item.expires_at/>
                " · given by " {item.created_by}
                " · " <a href=format!("/requests/{}", item.request_id)>"from this request"</a>
            </p>
            {active.then(move || view! {
                <ActionForm action=revoke>
                    <input type="hidden" name="id" value=id/>
                    <button class="danger" type="submit" disabled=move || revoke.pending().get()>"Revoke"</button>
                </ActionForm>
            })}
        </li>
    }
}
