//! `store::group`: several statements sent as one, on both engines (one hand-off on SQLite, one
//! statement of `WITH` clauses on PostgreSQL).

use crate::common;

use common::{Backend, TestApp};
use countersign::store::group::StatementGroup;
use countersign::store::StoreError;

/// Adds the insert of one row to `group`.
fn insert_one(group: &mut StatementGroup<'_>, a: &'static str, b: i64) {
    group.push(
        |p| {
            format!(
                "INSERT INTO grouped (a, b) VALUES ({}, {})",
                p.one(),
                p.one()
            )
        },
        move |q| q.bind(a).bind(b),
    );
}

async fn table(tx: &mut countersign::store::WriteTx) {
    sqlx::query("CREATE TABLE grouped (a TEXT PRIMARY KEY, b BIGINT NOT NULL)")
        .execute(&mut **tx)
        .await
        .unwrap();
}

/// Each statement gets its own parameters, however many came before it, and all of them run.
async fn statements_run_with_their_own_parameters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut tx = app.core.db.begin().await.unwrap();
    table(&mut tx).await;
    sqlx::query("INSERT INTO grouped (a, b) VALUES ('old', 1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut group = StatementGroup::new(app.core.db.backend());
    group.push(
        |p| format!("INSERT INTO grouped (a, b) VALUES {}", p.values(2, 2)),
        |q| q.bind("x").bind(10_i64).bind("y").bind(20_i64),
    );
    group.push(
        |p| {
            format!(
                "UPDATE grouped SET b = b + {} WHERE a IN ({})",
                p.one(),
                p.list(1)
            )
        },
        |q| q.bind(40_i64).bind("old"),
    );
    insert_one(&mut group, "z", 30);
    group.execute(&mut tx).await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT a, b FROM grouped ORDER BY a")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            ("old".into(), 41),
            ("x".into(), 10),
            ("y".into(), 20),
            ("z".into(), 30)
        ]
    );
}

/// One failing statement fails the group, and the transaction rolled back keeps nothing of it.
async fn a_failing_statement_fails_the_group(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut tx = app.core.db.begin().await.unwrap();
    table(&mut tx).await;
    tx.commit().await.unwrap();
    let mut tx = app.core.db.begin().await.unwrap();
    let mut group = StatementGroup::new(app.core.db.backend());
    insert_one(&mut group, "x", 1);
    group.push(
        |p| format!("INSERT INTO grouped (a, b) VALUES {}", p.values(2, 2)),
        |q| q.bind("y").bind(2_i64).bind("y").bind(3_i64),
    );
    assert!(group.execute(&mut tx).await.is_err());
    tx.rollback().await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM grouped")
        .fetch_one(app.core.db.reader())
        .await
        .unwrap();
    assert_eq!(n, 0);
}

/// An empty group runs nothing and succeeds.
async fn an_empty_group_is_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut tx = app.core.db.begin().await.unwrap();
    StatementGroup::new(app.core.db.backend())
        .execute(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// On PostgreSQL a reading statement anywhere but last would be skipped silently (a `WITH`
/// clause nobody reads): the group refuses it instead, and runs nothing.
async fn only_the_last_statement_may_read(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut tx = app.core.db.begin().await.unwrap();
    table(&mut tx).await;
    let mut group = StatementGroup::new(app.core.db.backend());
    group.push(|p| format!("SELECT {} AS x", p.one()), |q| q.bind(1_i64));
    insert_one(&mut group, "x", 1);
    let result = group.execute(&mut tx).await;
    match backend {
        Backend::Postgres => assert!(
            matches!(result, Err(StoreError::Misgrouped(_))),
            "{result:?}"
        ),
        // SQLite runs every statement of the string.
        Backend::Sqlite => result.unwrap(),
    }
}

on_both_backends!(
    statements_run_with_their_own_parameters,
    a_failing_statement_fails_the_group,
    an_empty_group_is_nothing,
    only_the_last_statement_may_read,
);
