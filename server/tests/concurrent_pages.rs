//! Pages rendered on the server for many people at once: every render completes with its own
//! status. (The inbox once set its title from a closure over its data that, under concurrent
//! renders, could run after the page's reactive owner was gone: the render panicked and the
//! browser's connection was dropped.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, TestApp};

const PAGES: [&str; 6] = [
    "/",
    "/history",
    "/admin/policy",
    "/admin/people",
    "/admin/audit",
    "/admin/agents",
];

async fn pages_render_for_many_people_at_once(backend: Backend) {
    let (app, alice, agent) = TestApp::with_alice(backend).await;
    app.ask_id(&agent, &common::transfer("50.00")).await;
    let mut bob = app.enrol("bob@example.com", "owner", &[]).await;
    let admin = alice.cookie.clone().unwrap();
    let owner = bob.cookie.take().unwrap();
    for _round in 0..10 {
        let renders = (0..24).map(|i| {
            let http = app.http.clone();
            let page = PAGES[i % PAGES.len()];
            let url = app.url(page);
            let (cookie, is_admin) = if i % 2 == 0 {
                (admin.clone(), true)
            } else {
                (owner.clone(), false)
            };
            tokio::spawn(async move {
                let r = http
                    .get(&url)
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{page}: {e}"));
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_else(|e| panic!("{page}: {e}"));
                let expected = if page.starts_with("/admin") && !is_admin {
                    403
                } else {
                    200
                };
                assert_eq!(status, expected, "{page} as admin={is_admin}");
                assert!(body.contains("</html>"), "{page}: a whole page");
                if page == "/" && is_admin {
                    assert!(
                        body.contains("<title>(1) Inbox"),
                        "{page}: the title counts"
                    );
                }
            })
        });
        for render in futures::future::join_all(renders).await {
            render.unwrap();
        }
    }
}

on_both_backends!(pages_render_for_many_people_at_once);
