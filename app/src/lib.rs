//! Countersign's web app: the pages owners and admins use, written once with Leptos and compiled
//! twice — with `ssr` into the server, which renders every page to HTML, and with `hydrate` into
//! the wasm bundle, which makes that HTML interactive in the browser.
//!
//! This crate owns presentation only. It never talks to the database or decides anything about a
//! request: everything it shows comes from server functions and endpoints in the `countersign`
//! server crate, which authorise every call themselves.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    StaticSegment,
};

/// The HTML document around every page, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The root component: stylesheet, title and routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    view! {
        <Stylesheet id="countersign" href="/pkg/countersign.css"/>
        <Title text="Countersign"/>
        <Router>
            <Main/>
        </Router>
    }
}

/// The page frame. Once the wasm has hydrated the page it marks `<main>` with
/// `data-hydrated="true"`: browser tests wait for it, and it is how we catch a release bundle
/// that renders on the server but fails to come alive in the browser.
#[component]
fn Main() -> impl IntoView {
    let hydrated = RwSignal::new(false);
    // Effects run only in the browser, after hydration, so this flips exactly when the wasm
    // has taken over the server-rendered HTML.
    Effect::new(move |_| hydrated.set(true));

    view! {
        <main data-hydrated=move || if hydrated.get() { "true" } else { "false" }>
            <Routes fallback=|| view! { <NotFound/> }>
                <Route path=StaticSegment("") view=HomePage/>
            </Routes>
        </main>
    }
}

#[component]
fn HomePage() -> impl IntoView {
    view! {
        <header class="masthead">
            <h1>"Countersign"</h1>
            <p class="lede">"A human in the loop for your agents' high-impact actions."</p>
        </header>
        <section class="card">
            <p>
                "Agents ask before they act; policy decides who must approve; owners approve "
                "with a passkey; agents receive a single-use grant bound to that exact action."
            </p>
            <p>
                "Agent authors: the API is described at "
                <a href="/api/v1/openapi.json">"/api/v1/openapi.json"</a> "."
            </p>
        </section>
    }
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
    leptos::mount::hydrate_body(App);
}
