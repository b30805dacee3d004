//! Countersign's web app: the pages owners and admins use, written once with Leptos and compiled
//! twice — with `ssr` into the server, which renders every page to HTML, and with `hydrate` into
//! the wasm bundle, which makes that HTML interactive in the browser.
//!
//! This crate owns presentation only. It never talks to the database or decides anything about a
//! request: everything it shows comes from server functions ([`api`]) whose server side lives in
//! the `countersign` crate and authorises every call itself, and from the passkey endpoints under
//! `/api/ui` ([`passkey`]).

pub mod api;
mod pages;
pub mod passkey;
pub mod ui;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, Lazy, SsrMode,
};

use crate::api::{AppError, Role, Viewer};

/// The HTML document around every page, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The signed-in person, loaded once per page load and shared by the header and the pages.
#[derive(Clone, Copy)]
pub struct Session(pub Resource<Result<Option<Viewer>, AppError>>);

/// The root component: stylesheet, title and routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    ui::provide_clock();
    let me = api::page_resource(|| (), |_| api::me());
    provide_context(Session(me));

    view! {
        <Stylesheet id="countersign" href="/pkg/countersign.css"/>
        <Title formatter=|text: String| {
            if text.is_empty() { "Countersign".to_string() } else { format!("{text} · Countersign") }
        }/>
        <Router>
            <Header/>
            <Main/>
        </Router>
    }
}

/// The top bar: where you are, who you are, where you can go.
#[component]
fn Header() -> impl IntoView {
    let Session(me) = expect_context::<Session>();
    let signing_out = RwSignal::new(false);
    let sign_out = move |_| {
        signing_out.set(true);
        leptos::task::spawn_local(async move {
            let _ = api::sign_out().await;
            go_to("/sign-in");
        });
    };
    view! {
        <header class="bar">
            <a class="brand" href="/">"Countersign"</a>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(Some(me)) => {
                            let admin = me.role == Role::Admin;
                            view! {
                                <nav aria-label="Main">
                                    <a href="/">"Inbox"</a>
                                    <a href="/history">"History"</a>
                                    <a href="/agents">"Agents"</a>
                                    <a href="/standing">"Standing"</a>
                                    {admin.then(|| view! { <a href="/admin/people">"People"</a> <a href="/admin/guards">"Guards"</a> <a href="/admin/policy">"Policy"</a> <a href="/admin/credentials">"Credentials"</a> <a href="/admin/audit">"Audit"</a> <a href="/admin/agents">"All agents"</a> })}
                                    <a href="/account" title=me.email.clone()>{me.display_name.clone()}</a>
                                    <button
                                        class="link"
                                        on:click=sign_out
                                        disabled=move || signing_out.get()
                                    >
                                        "Sign out"
                                    </button>
                                </nav>
                            }
                                .into_any()
                        }
                        _ => ().into_any(),
                    }
                })}
            </Transition>
        </header>
    }
}

/// The page frame. Once the wasm has hydrated the whole page, including a lazily loaded
/// route's code, [`hydrate`] marks `<main>` with `data-hydrated="true"`: browser tests wait
/// for it, and it is how we catch a release bundle that renders on the server but fails to
/// come alive in the browser.
#[component]
fn Main() -> impl IntoView {
    view! {
        <main data-hydrated="false">
            <Routes fallback=|| view! { <NotFound/> }>
                <Route path=path!("") view={Lazy::<pages::InboxRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/sign-in") view={Lazy::<pages::SignInRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/enrol/:token") view={Lazy::<pages::EnrolRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/requests/:id") view=pages::request::RequestPage ssr=SsrMode::Async/>
                <Route path=path!("/history") view={Lazy::<pages::HistoryRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/agents") view={Lazy::<pages::AgentsRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/standing") view={Lazy::<pages::StandingRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/account") view={Lazy::<pages::AccountRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/admin/people") view={Lazy::<pages::PeopleRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/admin/guards") view={Lazy::<pages::GuardsRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/admin/policy") view={Lazy::<pages::PolicyRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/admin/agents") view={Lazy::<pages::AdminAgentsRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/admin/credentials") view={Lazy::<pages::CredentialsRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/admin/audit") view={Lazy::<pages::AuditRoute>::new()} ssr=SsrMode::Async/>
                <Route path=path!("/admin/audit/request/:id") view={Lazy::<pages::AuditRequestRoute>::new()} ssr=SsrMode::Async/>
            </Routes>
        </main>
    }
}

/// Leaves the single-page app for `path` with a full page load: after sign-in or sign-out
/// everything on the page depends on the new session, so we start afresh.
pub(crate) fn go_to(path: &str) {
    #[cfg(feature = "hydrate")]
    if let Some(w) = web_sys::window() {
        let _ = w.location().set_href(path);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = path;
}

#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <Title text="Not found"/>
        <section class="card">
            <h1>"Not found"</h1>
            <p>"There is no page at this address."</p>
        </section>
    }
}

/// The wasm entry point: hydrates the server-rendered body.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // What `leptos::mount::hydrate_lazy` does, plus the mark once it is done. Not
    // `hydrate_body`: most routes are split into their own wasm chunks, which must be loaded
    // before their server-rendered HTML can be hydrated, so hydration is asynchronous and an
    // effect in the page would run before it ends.
    wasm_bindgen_futures::spawn_local(async {
        let Some(document) = web_sys::window().and_then(|w| w.document()) else {
            return;
        };
        let Some(body) = document.body() else {
            return;
        };
        leptos::mount::hydrate_from_async(body, App).await.forget();
        if let Ok(Some(main)) = document.query_selector("main") {
            let _ = main.set_attribute("data-hydrated", "true");
        }
    });
}
