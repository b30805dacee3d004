//! The person's own account: their passkeys (add another, rename, remove — never the last).

use leptos::prelude::*;
use leptos_meta::Title;
use serde_json::json;

use super::failure;
use crate::api::{passkeys, remove_passkey, AppError, PasskeyItem, RenamePasskey};
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
    // Renaming is an `ActionForm` in a `<details>`: it opens and posts before the wasm loads.
    let rename = ServerAction::<RenamePasskey>::new();
    Effect::new(move || {
        if let Some(Ok(())) = rename.value().get() {
            version.update(|v| *v += 1);
        }
    });
    let error = RwSignal::new(None::<AppError>);
    let id_remove = key.id.clone();
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
            <strong>{key.name.clone()}</strong>
            <span class="meta">
                "added " <When ms=key.created_at/> " · last used "
                {match key.last_used_at {
                    Some(t) => view! { <When ms=t/> }.into_any(),
                    None => "never".into_any(),
                }}
            </span>
            <details class="rename">
                <summary>"Rename"</summary>
                <ActionForm action=rename attr:class="inline">
                    <input type="hidden" name="id" value=key.id.clone()/>
                    <label class="visually-hidden" for=format!("name-{}", key.id)>"New name"</label>
                    <input id=format!("name-{}", key.id) name="name" required maxlength="100" value=key.name.clone()/>
                    <button type="submit" disabled=move || rename.pending().get()>"Save"</button>
                </ActionForm>
            </details>
            <button
                class="danger"
                on:click=remove
                disabled=last
                title=if last { "Your only passkey cannot be removed: add another first" } else { "" }
            >
                "Remove"
            </button>
            {move || rename.value().get().and_then(Result::err).map(|e| view! { <ErrorBox error=e/> })}
            {move || error.get().map(|e| view! { <ErrorBox error=e/> })}
        </li>
    }
}
