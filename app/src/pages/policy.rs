//! The policy (admins): the rule editor (see [`super::policy_editor`]) and the versions: who
//! applied each and when, what it changed against the one before, and rolling back to any of
//! them (which applies it again as a new version, so the rollback itself is on record). The
//! same versions as `countersign policy apply/show`.

use leptos::prelude::*;
use leptos_meta::Title;

use super::failure;
use crate::api::{policy_history, rollback_policy, AppError, PolicyVersionItem};
use crate::ui::{ErrorBox, Loading, When};

/// `/admin/policy`
#[component]
pub fn PolicyPage() -> impl IntoView {
    let version = RwSignal::new(0u64);
    let versions = crate::api::page_resource(move || version.get(), |_| policy_history());
    let error = RwSignal::new(None::<AppError>);
    view! {
        <Title text="Policy"/>
        <super::AdminOnly>
            <section class="page">
                <h1>"Policy"</h1>
                <p class="hint">
                    "Edited here or applied from the command line (" <code>"countersign policy apply FILE"</code>
                    "); both make a new version, and the newest is in force."
                </p>
                <super::policy_editor::PolicyEditor applied=version/>
                <h2>"Versions"</h2>
                {move || error.get().map(|e| view! { <ErrorBox error=e/> })}
                <Transition fallback=Loading>
                    {move || Suspend::new(async move {
                        match versions.await {
                            Ok(list) if list.is_empty() => view! {
                                <p class="empty">"No policy applied yet: every request needs one approval from the agent's owner."</p>
                            }.into_any(),
                            Ok(list) => view! {
                                <ol class="versions">
                                    {list.into_iter().map(|v| view! { <Version v refresh=version error/> }).collect_view()}
                                </ol>
                            }.into_any(),
                            Err(e) => failure(e),
                        }
                    })}
                </Transition>
            </section>
        </super::AdminOnly>
    }
}

#[component]
fn Version(
    v: PolicyVersionItem,
    refresh: RwSignal<u64>,
    error: RwSignal<Option<AppError>>,
) -> impl IntoView {
    let number = v.version;
    let roll_back = move |_| {
        error.set(None);
        leptos::task::spawn_local(async move {
            match rollback_policy(number).await {
                Ok(_) => refresh.update(|n| *n += 1),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <li class="version-row" data-version=number.to_string()>
            <details open=v.active>
                <summary>
                    <strong>{format!("Version {number}")}</strong>
                    {v.active.then(|| view! { " " <span class="status active">"in force"</span> })}
                    " · applied by " {v.applied_by.clone()} " " <When ms=v.applied_at/>
                </summary>
                <pre class="diff">
                    {v.diff.into_iter().map(|l| {
                        let (mark, class) = match l.op.as_str() {
                            "added" => ("+ ", "added"),
                            "removed" => ("- ", "removed"),
                            _ => ("  ", "same"),
                        };
                        view! { <span class=class>{mark}{l.line}"\n"</span> }
                    }).collect_view()}
                </pre>
                <p class="meta"><code class="hash">{v.hash}</code></p>
                {(!v.active).then(|| view! {
                    <button on:click=roll_back>{format!("Roll back to version {number}")}</button>
                })}
            </details>
        </li>
    }
}
