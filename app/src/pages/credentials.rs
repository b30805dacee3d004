//! Credential providers (admins): where the task-scoped credentials that policy rules release
//! come from. A provider's secret is typed once and never shown again; the list shows its
//! fingerprint, so two admins can tell whether they configured the same one.
//!
//! Adding and removing are `ActionForm`s: they post before the wasm loads too.

use leptos::prelude::*;
use leptos_meta::Title;

use super::failure;
use crate::api::{
    credential_providers, AddCredentialProvider, ProviderEntry, RemoveCredentialProvider,
};
use crate::ui::{ErrorBox, Loading, When};

/// `/admin/credentials`
#[component]
pub fn CredentialsPage() -> impl IntoView {
    let add = ServerAction::<AddCredentialProvider>::new();
    let remove = ServerAction::<RemoveCredentialProvider>::new();
    let providers = crate::api::page_resource(
        move || (add.version().get(), remove.version().get()),
        |_| credential_providers(),
    );
    let kind = RwSignal::new("postgres".to_string());
    let error = move || add.value().get().and_then(Result::err);
    let field = move |name: &'static str| {
        move || {
            error()
                .and_then(|e| e.for_field(name))
                .map(|m| view! { <p class="field-error">{m}</p> })
        }
    };
    view! {
        <Title text="Credentials"/>
        <super::AdminOnly>
        <section class="page">
            <h1>"Credential providers"</h1>
            <p class="hint">"A policy rule with " <code>"credential = \"NAME\""</code> " releases a credential from the provider NAME when its request is approved: a PostgreSQL login for that task only, or one call through the gateway with the secret added. Agents never hold these secrets."</p>
            <Transition fallback=Loading>
                {move || Suspend::new(async move {
                    match providers.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="empty">"No credential providers yet."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            <table class="providers" id="providers">
                                <thead><tr><th>"Name"</th><th>"Kind"</th><th>"Settings"</th><th>"Secret"</th><th>"Added"</th><th></th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|p| view! { <Row provider=p remove/> }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(e) => failure(e),
                    }
                })}
            </Transition>
            {move || remove.value().get().and_then(Result::err).map(|e| view! { <ErrorBox error=e/> })}
            <ActionForm action=add attr:class="card" attr:id="add-provider">
                <h2>"Add a provider"</h2>
                <label for="provider-name">"Name"</label>
                <input id="provider-name" name="provider[name]" required maxlength="64" placeholder="orders-db"/>
                {field("name")}
                <label for="provider-kind">"Kind"</label>
                <select id="provider-kind" name="provider[kind]" on:change=move |ev| kind.set(event_target_value(&ev))>
                    <option value="postgres" selected=true>"PostgreSQL: a login per task"</option>
                    <option value="http">"HTTP: a gateway that adds the secret"</option>
                </select>
                <fieldset class="kind-postgres">
                    <legend>"PostgreSQL"</legend>
                    <label for="template-role">"Template role (its privileges are what the login gets)"</label>
                    <input id="template-role" name="provider[template_role]" placeholder="orders_rw"/>
                    {field("template_role")}
                    <label for="connection-limit">"Sessions per login"</label>
                    <input id="connection-limit" name="provider[connection_limit]" inputmode="numeric" value="2"/>
                    {field("connection_limit")}
                    <label for="statement-timeout">"Statement timeout (ms)"</label>
                    <input id="statement-timeout" name="provider[statement_timeout_ms]" inputmode="numeric" value="30000"/>
                    {field("statement_timeout_ms")}
                </fieldset>
                <fieldset class="kind-http">
                    <legend>"HTTP gateway"</legend>
                    <label for="base-url">"Upstream base URL"</label>
                    <input id="base-url" name="provider[base_url]" type="url" placeholder="https://bank.example.com/api"/>
                    {field("base_url")}
                    <label for="header">"Header that carries the secret"</label>
                    <input id="header" name="provider[header]" value="Authorization"/>
                    {field("header")}
                    <label for="operations">"Operations it covers, one per line"</label>
                    <textarea id="operations" name="provider[operations]" rows="3" placeholder="POST /v2/transfers"></textarea>
                    {field("operations")}
                    <label for="timeout">"Timeout (seconds)"</label>
                    <input id="timeout" name="provider[timeout_seconds]" inputmode="numeric" value="10"/>
                    {field("timeout_seconds")}
                </fieldset>
                <label for="secret">{move || if kind.get() == "http" { "Header value (e.g. Bearer …)" } else { "Admin connection string (postgres://…)" }}</label>
                <input id="secret" name="provider[secret]" type="password" autocomplete="off" required/>
                <p class="hint">"Stored sealed with this server's credential key; never shown again."</p>
                {field("secret")}
                <button class="primary" type="submit" disabled=move || add.pending().get()>"Add provider"</button>
                {move || add.value().get().and_then(Result::ok).map(|p| view! {
                    <p class="outcome" role="status">{format!("Added {} (secret fingerprint {}).", p.name, p.fingerprint)}</p>
                })}
                {move || error().filter(|e| !matches!(e, crate::api::AppError::Invalid { field, .. } if !field.is_empty())).map(|e| view! { <ErrorBox error=e/> })}
            </ActionForm>
        </section>
        </super::AdminOnly>
    }
}

#[component]
fn Row(provider: ProviderEntry, remove: ServerAction<RemoveCredentialProvider>) -> impl IntoView {
    let name = provider.name;
    let (row_name, shown_name) = (name.clone(), name.clone());
    view! {
        <tr data-provider=row_name>
            <td><strong>{shown_name}</strong></td>
            <td>{provider.kind}</td>
            <td>{provider.summary}</td>
            <td><code>{provider.fingerprint}</code></td>
            <td><When ms=provider.created_at/> " by " {provider.created_by}</td>
            <td>
                <ActionForm action=remove>
                    <input type="hidden" name="name" value=name/>
                    <button class="danger" type="submit">"Remove"</button>
                </ActionForm>
            </td>
        </tr>
    }
}
