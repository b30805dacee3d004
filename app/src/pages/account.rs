//! The person's own account: their passkeys (add another, rename, remove — never the last).

use leptos::prelude::*;
use leptos_meta::Title;
use serde_json::json;

use super::failure;
use crate::api::{passkeys, remove_passkey, rename_passkey, AppError, PasskeyItem};
use crate::passkey::{ceremony, Ceremony};
use crate::ui::{ErrorBox, Loading, When};

/// `/account`
#[component]
pub fn AccountPage() -> impl IntoView {
    // The passkey code is its own wasm chunk: fetch it now, while the person reads.
    Effect::new(|_| crate::passkey::preload());
    let version = RwSignal::new(0u64);
    let keys = crate::api::page_resource(move || version.get(), |_| passkeys());
    let new_name = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<AppError>);

    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        error.set(None);
        let body = json!({ "passkey_name": new_name.get_untracked().trim() });
        leptos::task::spawn_local(async move {
            match ceremony(
                Ceremony::Create,
                "/api/ui/passkeys/start",
                &body,
                "/api/ui/passkeys/finish",
            )
            .await
            {
                Ok(_) => {
                    new_name.set(String::new());
                    version.update(|v| *v += 1);
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };

    view! {
        <Title text="Account"/>
        <section class="page">
            <h1>"Your passkeys"</h1>
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    match keys.await {
                        Ok(list) => {
                            let last = list.len() == 1;
                            view! {
                                <ul class="passkeys">
                                    {list.into_iter().map(|k| view! { <Row key=k last version/> }).collect_view()}
                                </ul>
                            }.into_any()
                        }
                        Err(e) => failure(e),
                    }
                })}
            </Transition>
            <form class="card" on:submit=add>
                <h2>"Add a passkey"</h2>
                <p class="hint">"A second passkey (say, on your phone) keeps you in if you lose the first."</p>
                <label for="new-passkey">"Name"</label>
                <input id="new-passkey" name="passkey_name" required maxlength="100" placeholder="Phone" bind:value=new_name/>
                <button class="primary" type="submit" disabled=move || busy.get()>
                    {move || if busy.get() { "Waiting for your passkey…" } else { "Add passkey" }}
                </button>
                {move || error.get().map(|e| view! { <ErrorBox error=e/> })}
            </form>
        </section>
    }
}

#[component]
fn Row(key: PasskeyItem, last: bool, version: RwSignal<u64>) -> impl IntoView {
    let name = RwSignal::new(key.name.clone());
    let editing = RwSignal::new(false);
    let error = RwSignal::new(None::<AppError>);
    let (id_rename, id_remove) = (key.id.clone(), key.id.clone());
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let id = id_rename.clone();
        let n = name.get_untracked().trim().to_string();
        leptos::task::spawn_local(async move {
            match rename_passkey(id, n).await {
                Ok(()) => {
                    editing.set(false);
                    version.update(|v| *v += 1);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let remove = move |_| {
        let id = id_remove.clone();
        leptos::task::spawn_local(async move {
            match remove_passkey(id).await {
                Ok(()) => version.update(|v| *v += 1),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <li class="passkey-row">
            <Show
                when=move || editing.get()
                fallback=move || view! {
                    <strong>{move || name.get()}</strong>
                    <span class="meta">
                        "added " <When ms=key.created_at/> " · last used "
                        {match key.last_used_at {
                            Some(t) => view! { <When ms=t/> }.into_any(),
                            None => "never".into_any(),
                        }}
                    </span>
                    <button on:click=move |_| editing.set(true)>"Rename"</button>
                    <button
                        class="danger"
                        on:click=remove.clone()
                        disabled=last
                        title=if last { "Your only passkey cannot be removed: add another first" } else { "" }
                    >
                        "Remove"
                    </button>
                }
            >
                <form class="inline" on:submit=save.clone()>
                    <label class="visually-hidden" for=format!("name-{}", key.id)>"New name"</label>
                    <input id=format!("name-{}", key.id) required maxlength="100" bind:value=name/>
                    <button type="submit">"Save"</button>
                    <button type="button" on:click=move |_| editing.set(false)>"Cancel"</button>
                </form>
            </Show>
            {move || error.get().map(|e| view! { <ErrorBox error=e/> })}
        </li>
    }
}
