//! Guards against approval fatigue (admins): the pending cap, mails per approver per minute,
//! the cooldown after a denial, collapsing identical requests, and the approve delay. The
//! server enforces them; this page only sets them.
//!
//! The form posts to the server function itself, so it works before the wasm loads; once it
//! has, the page checks the numbers first and sends them through a `ServerAction`.

use leptos::prelude::*;
use leptos::server_fn::ServerFn as _;
use leptos_meta::Title;

use super::failure;
use crate::api::{guards, AppError, GuardSettings, SetGuards};
use crate::ui::{ErrorBox, Loading};

/// `/admin/guards`
#[component]
pub fn GuardsPage() -> impl IntoView {
    let current = crate::api::page_resource(|| (), |_| guards());
    view! {
        <Title text="Guards"/>
        <super::AdminOnly>
        <section class="page">
            <h1>"Guards against approval fatigue"</h1>
            <p class="hint">"People asked too often stop reading. These keep the asking sparse; the server enforces them for every agent."</p>
            <Suspense fallback=Loading>
                {move || Suspend::new(async move {
                    match current.await {
                        Ok(g) => view! { <GuardsForm initial=g/> }.into_any(),
                        Err(e) => failure(e),
                    }
                })}
            </Suspense>
        </section>
        </super::AdminOnly>
    }
}

#[component]
fn GuardsForm(initial: GuardSettings) -> impl IntoView {
    let pending = RwSignal::new(initial.max_pending_per_agent.to_string());
    let prompts = RwSignal::new(initial.prompts_per_approver_per_minute.to_string());
    let cooldown = RwSignal::new(initial.deny_cooldown_seconds.to_string());
    let delay = RwSignal::new(initial.approve_delay_ms.to_string());
    let collapse = RwSignal::new(initial.collapse_identical);
    let save = ServerAction::<SetGuards>::new();
    // A number the page refused before sending; otherwise the server's answer.
    let refused = RwSignal::new(None::<AppError>);
    let error = move || {
        refused
            .get()
            .or_else(|| save.value().get().and_then(Result::err))
    };
    let saved = move || matches!(save.value().get(), Some(Ok(_)));

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        refused.set(None);
        let number = |field: &str, s: RwSignal<String>| {
            s.get_untracked()
                .trim()
                .parse::<u32>()
                .map_err(|_| AppError::Invalid {
                    field: field.to_string(),
                    message: "a whole number, 0 or more".into(),
                })
        };
        let parsed = (|| {
            Ok(GuardSettings {
                max_pending_per_agent: number("max_pending_per_agent", pending)?,
                prompts_per_approver_per_minute: number(
                    "prompts_per_approver_per_minute",
                    prompts,
                )?,
                deny_cooldown_seconds: number("deny_cooldown_seconds", cooldown)?,
                approve_delay_ms: number("approve_delay_ms", delay)?,
                collapse_identical: collapse.get_untracked(),
            })
        })();
        match parsed {
            Ok(guards) => {
                save.dispatch(SetGuards { guards });
            }
            Err(e) => refused.set(Some(e)),
        }
    };
    let field = move |name: &'static str| {
        move || {
            error()
                .and_then(|e| e.for_field(name))
                .map(|m| view! { <p class="field-error">{m}</p> })
        }
    };
    // Errors no field shows: a field-less `Invalid` is a form the server could not read (posted
    // before the wasm loaded, with a number that is not one).
    let named_field =
        |e: &AppError| matches!(e, AppError::Invalid { field, .. } if !field.is_empty());

    // `bind:` sets the input's property in the browser and renders nothing on the server, so
    // each input also carries its stored value as an attribute: the form a browser without
    // the wasm shows (and posts back) starts from what is stored.
    view! {
        <form class="card" id="guards" method="post" action=SetGuards::url() on:submit=submit>
            <label for="max_pending_per_agent">"Requests one agent may have waiting"</label>
            <input id="max_pending_per_agent" name="guards[max_pending_per_agent]" inputmode="numeric" value=initial.max_pending_per_agent.to_string() bind:value=pending/>
            {field("max_pending_per_agent")}
            <label for="prompts_per_approver_per_minute">"Mails per approver per minute"</label>
            <input id="prompts_per_approver_per_minute" name="guards[prompts_per_approver_per_minute]" inputmode="numeric" value=initial.prompts_per_approver_per_minute.to_string() bind:value=prompts/>
            <p class="hint">"More requests than this wait in the inbox without a mail."</p>
            {field("prompts_per_approver_per_minute")}
            <label for="deny_cooldown_seconds">"Cooldown after a denial (seconds, 0 = off)"</label>
            <input id="deny_cooldown_seconds" name="guards[deny_cooldown_seconds]" inputmode="numeric" value=initial.deny_cooldown_seconds.to_string() bind:value=cooldown/>
            <p class="hint">"The same agent asking for the same action again is refused this long."</p>
            {field("deny_cooldown_seconds")}
            <label for="approve_delay_ms">"Approve delay (milliseconds, 0 = off)"</label>
            <input id="approve_delay_ms" name="guards[approve_delay_ms]" inputmode="numeric" value=initial.approve_delay_ms.to_string() bind:value=delay/>
            <p class="hint">"Approving opens only this long after the request's page does."</p>
            {field("approve_delay_ms")}
            <label class="check">
                <input id="collapse_identical" type="checkbox" name="guards[collapse_identical]" value="true" checked=initial.collapse_identical bind:checked=collapse/>
                " Collapse identical pending requests of an agent into one"
            </label>
            <button class="primary" type="submit" disabled=move || save.pending().get()>"Save"</button>
            {move || saved().then(|| view! { <p class="outcome" role="status">"Saved. Every replica applies it within 2 seconds."</p> })}
            {move || error().filter(|e| !named_field(e)).map(|e| view! { <ErrorBox error=e/> })}
        </form>
    }
}
