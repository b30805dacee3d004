//! Sign in with a passkey. The browser's passkey picker offers the person's passkeys for this
//! site (discoverable credentials), so there is nothing to type; an e-mail field is there for
//! authenticators that cannot hold discoverable credentials.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use serde_json::json;

use super::safe_next;
use crate::api::AppError;
use crate::go_to;
use crate::passkey::{ceremony, Ceremony};
use crate::ui::ErrorBox;

/// `/sign-in?next=/requests/…`
#[component]
pub fn SignInPage() -> impl IntoView {
    // The passkey code is its own wasm chunk: fetch it now, while the person reads.
    Effect::new(|_| crate::passkey::preload());
    let query = use_query_map();
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<AppError>);
    let email = RwSignal::new(String::new());

    let sign_in = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        error.set(None);
        let next = safe_next(query.get_untracked().get("next"));
        let email = email.get_untracked().trim().to_string();
        let body = if email.is_empty() {
            json!({})
        } else {
            json!({ "email": email })
        };
        leptos::task::spawn_local(async move {
            match ceremony(
                Ceremony::Get,
                "/api/ui/sign-in/start",
                &body,
                "/api/ui/sign-in/finish",
            )
            .await
            {
                Ok(_) => go_to(&next),
                Err(e) => {
                    error.set(Some(e));
                    busy.set(false);
                }
            }
        });
    };

    view! {
        <Title text="Sign in"/>
        <section class="card narrow">
            <h1>"Sign in"</h1>
            <p>"Use the passkey you registered with Countersign: your phone, your computer or a security key."</p>
            <form on:submit=sign_in>
                <details>
                    <summary>"My passkey is not offered"</summary>
                    <label for="email">"E-mail"</label>
                    <input
                        id="email"
                        name="email"
                        type="email"
                        autocomplete="username webauthn"
                        bind:value=email
                    />
                    <p class="hint">"With your e-mail, we ask for the passkeys registered to it."</p>
                </details>
                <button class="primary" type="submit" disabled=move || busy.get()>
                    {move || if busy.get() { "Waiting for your passkey…" } else { "Sign in with a passkey" }}
                </button>
            </form>
            {move || error.get().map(|e| view! { <ErrorBox error=e/> })}
            <p class="hint">"No account? Ask an admin for an invitation link."</p>
        </section>
    }
}
