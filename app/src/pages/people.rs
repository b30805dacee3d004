//! People (admins): invite someone with a role and groups. The link is shown to the admin and
//! mailed to the person.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{invite, AppError, InvitationOut};
use crate::ui::{absolute, ErrorBox};

/// `/admin/people`
#[component]
pub fn PeoplePage() -> impl IntoView {
    let email = RwSignal::new(String::new());
    let role = RwSignal::new("owner".to_string());
    let groups = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<AppError>);
    let sent = RwSignal::new(None::<InvitationOut>);

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        error.set(None);
        let (e, r, g) = (
            email.get_untracked(),
            role.get_untracked(),
            groups.get_untracked(),
        );
        leptos::task::spawn_local(async move {
            match invite(e.trim().to_string(), r, g).await {
                Ok(inv) => {
                    sent.set(Some(inv));
                    email.set(String::new());
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    let field = move |name: &'static str| {
        move || {
            error
                .get()
                .and_then(|e| e.for_field(name))
                .map(|m| view! { <p class="field-error">{m}</p> })
        }
    };

    view! {
        <Title text="People"/>
        <super::AdminOnly>
        <section class="page">
            <h1>"People"</h1>
            {move || sent.get().map(|inv| view! {
                <section class="card" role="status">
                    <p>{format!("Invitation for {} (mailed to them too):", inv.email)}</p>
                    <p class="secret"><code id="invite-link">{inv.link}</code></p>
                    <p class="hint">"It works once, until " {absolute(inv.expires_at)} "."</p>
                </section>
            })}
            <form class="card" on:submit=submit>
                <h2>"Invite someone"</h2>
                <label for="invite-email">"E-mail"</label>
                <input id="invite-email" name="email" type="email" required bind:value=email/>
                {field("email")}
                <label for="invite-role">"Role"</label>
                <select id="invite-role" name="role" bind:value=role>
                    <option value="owner">"Owner: runs agents and approves"</option>
                    <option value="admin">"Admin: also sets policy and manages people"</option>
                </select>
                {field("role")}
                <label for="invite-groups">"Groups (comma-separated, optional)"</label>
                <input id="invite-groups" name="groups" placeholder="finance, sre" bind:value=groups/>
                {field("groups")}
                <button class="primary" type="submit" disabled=move || busy.get()>"Invite"</button>
                {move || error.get().filter(|e| !matches!(e, AppError::Invalid { .. })).map(|e| view! { <ErrorBox error=e/> })}
            </form>
        </section>
        </super::AdminOnly>
    }
}
