//! People (admins): invite someone with a role and groups (the link is shown to the admin and
//! mailed to the person); see everyone with their passkeys and last sign-in; change a person's
//! role and groups; deactivate someone, which ends their sessions at once.
//!
//! Inviting is an `ActionForm`: before the wasm loads the browser posts it, and the link comes
//! back to this page once ([`sent_invitation`]).

use leptos::prelude::*;
use leptos_meta::Title;

use super::failure;
use crate::api::{
    people, sent_invitation, set_person_active, update_person, AppError, InvitationOut, Invite,
    PersonItem, Role,
};
use crate::ui::{absolute, ErrorBox, Loading, When};

/// `/admin/people`
#[component]
pub fn PeoplePage() -> impl IntoView {
    let invite = ServerAction::<Invite>::new();
    let handed_over = crate::api::page_resource(|| (), |_| sent_invitation());
    let email = RwSignal::new(String::new());
    let error = move || invite.value().get().and_then(Result::err);
    let sent = move || invite.value().get().and_then(Result::ok);
    Effect::new(move || {
        if sent().is_some() {
            email.set(String::new());
        }
    });
    let field = move |name: &'static str| {
        move || {
            error()
                .and_then(|e| e.for_field(name))
                .map(|m| view! { <p class="field-error">{m}</p> })
        }
    };

    view! {
        <Title text="People"/>
        <super::AdminOnly>
        <section class="page">
            <h1>"People"</h1>
            {move || sent().map(|inv| view! { <Sent inv/> })}
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    handed_over.await.ok().flatten().map(|inv| view! { <Sent inv/> })
                })}
            </Transition>
            <ActionForm action=invite attr:class="card" attr:id="invite">
                <h2>"Invite someone"</h2>
                <label for="invite-email">"E-mail"</label>
                <input id="invite-email" name="email" type="email" required bind:value=email/>
                {field("email")}
                <label for="invite-role">"Role"</label>
                <select id="invite-role" name="role">
                    <option value="owner">"Owner: runs agents and approves"</option>
                    <option value="admin">"Admin: also sets policy and manages people"</option>
                </select>
                {field("role")}
                <label for="invite-groups">"Groups (comma-separated, optional)"</label>
                <input id="invite-groups" name="groups" placeholder="finance, sre"/>
                {field("groups")}
                <button class="primary" type="submit" disabled=move || invite.pending().get()>"Invite"</button>
                {move || error().filter(|e| !matches!(e, AppError::Invalid { .. })).map(|e| view! { <ErrorBox error=e/> })}
            </ActionForm>
            <Everyone/>
        </section>
        </super::AdminOnly>
    }
}

/// An invitation just sent: the link is shown here once.
#[component]
fn Sent(inv: InvitationOut) -> impl IntoView {
    view! {
        <section class="card" role="status">
            <p>{format!("Invitation for {} (mailed to them too):", inv.email)}</p>
            <p class="secret"><code id="invite-link">{inv.link}</code></p>
            <p class="hint">"It works once, until " {absolute(inv.expires_at)} "."</p>
        </section>
    }
}

/// Everyone, with what admins can change about them.
#[component]
fn Everyone() -> impl IntoView {
    let refresh = RwSignal::new(0u64);
    let list = crate::api::page_resource(move || refresh.get(), |_| people());
    view! {
        <h2>"Everyone"</h2>
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                match list.await {
                    Ok(all) => {
                        let groups = groups_of(&all);
                        view! {
                            <ul class="people">
                                {all.into_iter().map(|p| view! { <PersonRow p refresh/> }).collect_view()}
                            </ul>
                            <h2>"Groups"</h2>
                            <p class="hint">
                                "A group exists while someone is in it. Policy rules name groups as approvers ("
                                <code>"group:finance"</code> ")."
                            </p>
                            {if groups.is_empty() {
                                view! { <p class="empty">"No groups yet: add people to one above."</p> }.into_any()
                            } else {
                                view! {
                                    <dl class="groups">
                                        {groups.into_iter().map(|(g, members)| view! {
                                            <dt><code>{g}</code></dt>
                                            <dd>{members.join(", ")}</dd>
                                        }).collect_view()}
                                    </dl>
                                }.into_any()
                            }}
                        }.into_any()
                    }
                    Err(e) => failure(e),
                }
            })}
        </Transition>
    }
}

/// Each group with its active members' e-mails, by group name.
fn groups_of(people: &[PersonItem]) -> Vec<(String, Vec<String>)> {
    let mut groups = std::collections::BTreeMap::<String, Vec<String>>::new();
    for p in people.iter().filter(|p| p.active) {
        for g in &p.groups {
            groups.entry(g.clone()).or_default().push(p.email.clone());
        }
    }
    groups.into_iter().collect()
}

#[component]
fn PersonRow(p: PersonItem, refresh: RwSignal<u64>) -> impl IntoView {
    let id = StoredValue::new(p.id.clone());
    let role = RwSignal::new(p.role.as_str().to_string());
    let groups = RwSignal::new(p.groups.join(", "));
    // `bind:` renders nothing on the server: the stored values also go in as attributes, so the
    // page shows them before the wasm loads.
    let (is_admin, stored_groups) = (p.role == Role::Admin, p.groups.join(", "));
    let error = RwSignal::new(None::<AppError>);
    let saved = RwSignal::new(false);
    let confirming = RwSignal::new(false);
    let active = p.active;
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        error.set(None);
        saved.set(false);
        let (r, g) = (role.get_untracked(), groups.get_untracked());
        leptos::task::spawn_local(async move {
            match update_person(id.get_value(), r, g).await {
                Ok(_) => saved.set(true),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let toggle = move |_| {
        error.set(None);
        leptos::task::spawn_local(async move {
            match set_person_active(id.get_value(), !active).await {
                Ok(()) => refresh.update(|n| *n += 1),
                Err(e) => error.set(Some(e)),
            }
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
    let email = p.email.clone();
    view! {
        <li class="person-card" data-email=p.email.clone()>
            <div class="person-head">
                <strong>{p.name.clone()}</strong>
                <span>{p.email.clone()}</span>
                {if active {
                    view! { <span class="status active">"active"</span> }.into_any()
                } else {
                    view! { <span class="status denied">"deactivated"</span> }.into_any()
                }}
            </div>
            <p class="meta">
                "Enrolled " <When ms=p.created_at/> " · last sign-in "
                {match p.last_sign_in_at {
                    Some(ms) => view! { <When ms/> }.into_any(),
                    None => view! { "never" }.into_any(),
                }}
            </p>
            <details>
                <summary>{format!("{} passkey(s)", p.passkeys.len())}</summary>
                <ul class="passkeys">
                    {p.passkeys.into_iter().map(|k| view! {
                        <li>
                            <strong>{k.name}</strong> " · added " {absolute(k.created_at)} " · last used "
                            {k.last_used_at.map(absolute).unwrap_or_else(|| "never".into())}
                        </li>
                    }).collect_view()}
                </ul>
            </details>
            <form class="person-edit" on:submit=save>
                <label>
                    "Role"
                    <select name="role" bind:value=role>
                        <option value="owner" selected=!is_admin>"owner"</option>
                        <option value="admin" selected=is_admin>"admin"</option>
                    </select>
                </label>
                {field("role")}
                <label>
                    "Groups"
                    <input name="groups" placeholder="finance, sre" value=stored_groups bind:value=groups/>
                </label>
                {field("groups")}
                <button type="submit">"Save"</button>
                {move || saved.get().then(|| view! { <span class="saved" role="status">"Saved"</span> })}
            </form>
            <div class="actions">
                {move || if confirming.get() {
                    view! {
                        <p class="confirm">
                            {if active { format!("Deactivate {email}? Their sessions end now and their passkeys stop working.") }
                             else { format!("Reactivate {email}?") }}
                            " "
                            <button class=if active { "danger" } else { "" } on:click=toggle>
                                {if active { "Yes, deactivate" } else { "Yes, reactivate" }}
                            </button>
                            " "
                            <button on:click=move |_| confirming.set(false)>"Cancel"</button>
                        </p>
                    }.into_any()
                } else {
                    view! {
                        <button on:click=move |_| confirming.set(true)>
                            {if active { "Deactivate" } else { "Reactivate" }}
                        </button>
                    }.into_any()
                }}
            </div>
            {move || error.get().filter(|e| !matches!(e, AppError::Invalid { .. })).map(|e| view! { <ErrorBox error=e/> })}
        </li>
    }
}
