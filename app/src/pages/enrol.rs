//! Enrolment: an invitation link (or the first-admin link) opens this page, which registers the
//! person's first passkey. There are no passwords anywhere.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use serde_json::json;

use super::failure;
use crate::api::{enrolment, AppError, EnrolmentInfo};
use crate::go_to;
use crate::passkey::{ceremony, Ceremony};
use crate::ui::{absolute, ErrorBox, Loading};

/// `/enrol/:token`
#[component]
pub fn EnrolPage() -> impl IntoView {
    // The passkey code is its own wasm chunk: fetch it now, while the person reads.
    Effect::new(|_| crate::passkey::preload());
    let params = use_params_map();
    let token = move || params.read().get("token").unwrap_or_default();
    let info = crate::api::page_resource(token, enrolment);

    view! {
        <Title text="Welcome"/>
        <section class="card narrow">
            <Suspense fallback=Loading>
                {move || Suspend::new(async move {
                    match info.await {
                        Ok(info) => view! { <EnrolForm token=token() info/> }.into_any(),
                        Err(e) => failure(e),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn EnrolForm(token: String, info: EnrolmentInfo) -> impl IntoView {
    let first_admin = info.email.is_none();
    let email = RwSignal::new(info.email.clone().unwrap_or_default());
    let display_name = RwSignal::new(String::new());
    let passkey_name = RwSignal::new("My passkey".to_string());
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<AppError>);
    let field_error = move |name: &'static str| {
        move || {
            error
                .get()
                .and_then(|e| e.for_field(name))
                .map(|m| view! { <p class="field-error" id=format!("{name}-error")>{m}</p> })
        }
    };

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        error.set(None);
        let mut body = json!({
            "token": token.clone(),
            "display_name": display_name.get_untracked().trim(),
            "passkey_name": passkey_name.get_untracked().trim(),
        });
        if first_admin {
            body["email"] = json!(email.get_untracked().trim());
        }
        leptos::task::spawn_local(async move {
            match ceremony(
                Ceremony::Create,
                "/api/ui/enrol/start",
                &body,
                "/api/ui/enrol/finish",
            )
            .await
            {
                Ok(_) => go_to("/"),
                Err(e) => {
                    error.set(Some(e));
                    busy.set(false);
                }
            }
        });
    };

    view! {
        <h1>{if first_admin { "Set up Countersign" } else { "Welcome to Countersign" }}</h1>
        <p>
            {match &info.email {
                Some(e) => format!("You are invited as {e}, with the role {}.", info.role),
                None => "This link makes you the first admin.".to_string(),
            }}
            " Register a passkey to finish: it is how you sign in and how you approve."
        </p>
        <form on:submit=submit>
            {first_admin.then(|| view! {
                <label for="email">"Your e-mail"</label>
                <input id="email" name="email" type="email" required autocomplete="email" bind:value=email/>
                {field_error("email")}
            })}
            <label for="display_name">"Your name"</label>
            <input id="display_name" name="display_name" required autocomplete="name" bind:value=display_name/>
            {field_error("display_name")}
            <label for="passkey_name">"Name this passkey"</label>
            <input id="passkey_name" name="passkey_name" required bind:value=passkey_name/>
            <p class="hint">"E.g. “Work laptop” or “Phone”, so you can tell your passkeys apart later."</p>
            {field_error("passkey_name")}
            <button class="primary" type="submit" disabled=move || busy.get()>
                {move || if busy.get() { "Waiting for your passkey…" } else { "Register a passkey" }}
            </button>
        </form>
        {move || {
            error
                .get()
                .filter(|e| !matches!(e, AppError::Invalid { field, .. } if ["email", "display_name", "passkey_name"].contains(&field.as_str())))
                .map(|e| view! { <ErrorBox error=e/> })
        }}
        <p class="hint">"This link works once and expires " {absolute(info.expires_at)} "."</p>
    }
}
