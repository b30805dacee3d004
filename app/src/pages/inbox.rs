//! The inbox: requests waiting for this person's decision, newest first, kept live by a
//! server-sent event stream (`/api/ui/events`). Each event only says "something changed"; the
//! page then asks for its own inbox again, so the stream itself carries nothing anyone could
//! read about other people's requests.

use leptos::prelude::*;
use leptos_meta::Title;

use super::failure;
use crate::api::{inbox, InboxItem};
use crate::ui::{Countdown, Loading, Risks, When};

/// `/`
#[component]
pub fn InboxPage() -> impl IntoView {
    let version = RwSignal::new(0u64);
    let items = crate::api::page_resource(move || version.get(), |_| inbox());
    let live = RwSignal::new("connecting");
    listen_for_changes(version, live);

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
                                {list.into_iter().map(|item| view! { <Row item/> }).collect_view()}
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

#[component]
fn Row(item: InboxItem) -> impl IntoView {
    let href = format!("/requests/{}", item.id);
    view! {
        <li class="inbox-row" data-request-id=item.id.clone()>
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
