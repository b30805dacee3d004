//! History: finished requests this person may see, filterable by agent, status and time, each
//! with its events from the audit chain.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::failure;
use crate::api::{history, my_agents, EventRow, HistoryFilter, HistoryItem, RequestStatus};
use crate::ui::{Loading, ValueTable, When};

/// `/history?agent=…&status=…&within=…`
#[component]
pub fn HistoryPage() -> impl IntoView {
    let query = use_query_map();
    let filter = move || {
        let q = query.read();
        HistoryFilter {
            agent: q.get("agent").unwrap_or_default(),
            status: q.get("status").unwrap_or_default(),
            within_hours: q.get("within").and_then(|w| w.parse().ok()).unwrap_or(0),
        }
    };
    let items = crate::api::page_resource(filter, history);
    let agents = crate::api::page_resource(|| (), |_| my_agents());

    view! {
        <Title text="History"/>
        <section class="page">
            <h1>"History"</h1>
            // A plain GET form: filtering works before the wasm loads, and the URL says what is shown.
            <form class="filters" method="get" action="/history">
                <label>
                    "Agent "
                    <select name="agent">
                        <option value="">"Any"</option>
                        <Transition fallback=|| ()>
                            {move || Suspend::new(async move {
                                let chosen = filter().agent;
                                agents.await.unwrap_or_default().into_iter().map(|a| {
                                    let selected = a.id == chosen;
                                    view! { <option value=a.id selected=selected>{a.name}</option> }
                                }).collect_view()
                            })}
                        </Transition>
                    </select>
                </label>
                <label>
                    "Status "
                    <select name="status">
                        <option value="" selected=move || filter().status.is_empty()>"Any"</option>
                        {RequestStatus::FINAL.into_iter().map(|s| {
                            view! { <option value=s.as_str() selected=move || filter().status == s.as_str()>{s.as_str()}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <label>
                    "When "
                    <select name="within">
                        {[(0, "Any time"), (1, "Last hour"), (24, "Last day"), (168, "Last week")].into_iter().map(|(h, label)| {
                            view! { <option value=h.to_string() selected=move || filter().within_hours == h>{label}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <button type="submit">"Filter"</button>
            </form>
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    match items.await {
                        Ok(list) if list.is_empty() => view! { <p class="empty">"No requests match."</p> }.into_any(),
                        Ok(list) => view! {
                            <ul class="history">
                                {list.into_iter().map(|item| view! { <Item item/> }).collect_view()}
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
fn Item(item: HistoryItem) -> impl IntoView {
    view! {
        <li class="history-row" data-request-id=item.id.clone()>
            <details>
                <summary>
                    <span class=format!("status {}", item.status)>{item.status.as_str()}</span>
                    " "
                    <strong>{item.agent_name}</strong>
                    " · "
                    <code>{item.action_type}</code>
                    " on "
                    <code>{item.target}</code>
                    " · "
                    <When ms=item.decided_at.unwrap_or(item.created_at)/>
                </summary>
                <p><a href=format!("/requests/{}", item.id)>"Open the request"</a></p>
                <ol class="events">
                    {item.events.into_iter().map(|e| view! { <Event event=e/> }).collect_view()}
                </ol>
            </details>
        </li>
    }
}

#[component]
fn Event(event: EventRow) -> impl IntoView {
    view! {
        <li>
            <span class="seq">"#" {event.seq}</span>
            " "
            <code>{event.kind}</code>
            " by "
            <span>{event.actor}</span>
            " "
            <When ms=event.at/>
            <details class="evidence">
                <summary>"Evidence"</summary>
                <ValueTable value=event.data/>
            </details>
        </li>
    }
}
