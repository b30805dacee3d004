//! One module per page. Each page loads its data through the server functions in
//! [`crate::api`], shows a loading state while it does, and an error a person can act on when
//! it fails; a signed-out visitor is sent to sign in and brought back afterwards.

pub mod account;
pub mod admin_agents;
pub mod agents;
pub mod audit;
pub mod credentials;
pub mod delegation_chain;
pub mod enrol;
pub mod guards;
pub mod history;
pub mod inbox;
pub mod people;
pub mod policy;
pub mod policy_editor;
pub mod request;
pub mod sign_in;
pub mod standing;

use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_location;
use leptos_router::{lazy_route, LazyRoute};

use crate::api::AppError;
use crate::ui::ErrorBox;

/// Renders a failure; a signed-out visitor is redirected to sign in and, afterwards, back here.
pub fn failure(error: AppError) -> AnyView {
    if error == AppError::SignInRequired {
        let location = use_location();
        let search = location.search.get_untracked();
        let search = search.trim_start_matches('?');
        let mut here = location.pathname.get_untracked();
        if !search.is_empty() {
            here = format!("{here}?{search}");
        }
        view! { <Redirect path=format!("/sign-in?next={}", encode(&here))/> }.into_any()
    } else {
        view! { <ErrorBox error/> }.into_any()
    }
}

/// Shows its children to admins only. Everyone else gets what the server functions behind the
/// page would answer anyway: signed out, a redirect to sign in; an owner, 403.
#[component]
pub fn AdminOnly(children: ChildrenFn) -> impl IntoView {
    let crate::Session(me) = expect_context::<crate::Session>();
    let children = StoredValue::new(children);
    view! {
        <Suspense fallback=crate::ui::Loading>
            {move || Suspend::new(async move {
                let refused = match me.await {
                    Ok(Some(v)) if v.role == crate::api::Role::Admin => {
                        return children.with_value(|c| c()).into_any();
                    }
                    Ok(Some(_)) => AppError::Forbidden("This page is for admins.".into()),
                    Ok(None) => AppError::SignInRequired,
                    Err(e) => e,
                };
                #[cfg(feature = "ssr")]
                let _ = crate::api::with_status::<()>(Err(refused.clone()));
                failure(refused)
            })}
        </Suspense>
    }
}

/// Percent-encodes a path for a query parameter.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Where to go after sign-in: only a path on this site (never another origin), else the inbox.
pub fn safe_next(next: Option<String>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_only_ever_a_local_path() {
        assert_eq!(safe_next(Some("/requests/abc".into())), "/requests/abc");
        assert_eq!(safe_next(Some("//evil.example".into())), "/");
        assert_eq!(safe_next(Some("https://evil.example".into())), "/");
        assert_eq!(safe_next(Some("/\\evil.example".into())), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn encode_escapes_query_characters() {
        assert_eq!(encode("/a b?c=d&e"), "/a%20b%3Fc%3Dd%26e");
    }
}

/// Declares a page whose code the browser loads only when it is visited (`cargo leptos build
/// --split` puts it in its own wasm chunk): every page but the request page, so that an
/// approver's phone, opening a request from a mail, downloads only what it needs to decide.
macro_rules! lazy_page {
    ($(#[$doc:meta])* $route:ident => $page:path) => {
        $(#[$doc])*
        pub struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                $page().into_any()
            }
        }
    };
}

lazy_page!(
    /// `/admin/people`
    PeopleRoute => people::PeoplePage
);
lazy_page!(
    /// `/standing`
    StandingRoute => standing::StandingPage
);
lazy_page!(
    /// `/admin/credentials`
    CredentialsRoute => credentials::CredentialsPage
);
lazy_page!(
    /// `/admin/guards`
    GuardsRoute => guards::GuardsPage
);
lazy_page!(
    /// `/admin/policy`
    PolicyRoute => policy::PolicyPage
);
lazy_page!(
    /// `/admin/agents`
    AdminAgentsRoute => admin_agents::AdminAgentsPage
);
lazy_page!(
    /// `/admin/audit`
    AuditRoute => audit::AuditPage
);
lazy_page!(
    /// `/admin/audit/request/:id`
    AuditRequestRoute => audit::AuditRequestPage
);
lazy_page!(
    /// `/history`
    HistoryRoute => history::HistoryPage
);
lazy_page!(
    /// `/agents`
    AgentsRoute => agents::AgentsPage
);
lazy_page!(
    /// `/account`
    AccountRoute => account::AccountPage
);
lazy_page!(
    /// `/`
    InboxRoute => inbox::InboxPage
);
lazy_page!(
    /// `/sign-in`
    SignInRoute => sign_in::SignInPage
);
lazy_page!(
    /// `/enrol/:token`
    EnrolRoute => enrol::EnrolPage
);
