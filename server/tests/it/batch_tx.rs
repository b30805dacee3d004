//! `store::intake::BatchTx`: the intake writer's transaction. On SQLite it is begun and ended
//! by hand on a connection the writer keeps across batches, so what matters is that no way of
//! ending it (commit, a failing statement, rollback, an early return) leaves that connection
//! inside a transaction for its next user.

use crate::common;

use common::{Backend, TestApp};
use countersign::store::group::StatementGroup;
use countersign::store::intake::{BatchTx, HeldWriter};
use countersign::store::Db;

async fn with_table(backend: Backend) -> TestApp {
    let app = TestApp::spawn(backend).await;
    sqlx::query("CREATE TABLE kept (a TEXT PRIMARY KEY)")
        .execute(app.core.db.writer())
        .await
        .unwrap();
    app
}

fn insert(group: &mut StatementGroup<'_>, a: &'static str) {
    group.push(
        |p| format!("INSERT INTO kept (a) VALUES ({})", p.one()),
        move |q| q.bind(a),
    );
}

async fn rows(db: &Db) -> Vec<String> {
    sqlx::query_as::<_, (String,)>("SELECT a FROM kept ORDER BY a")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .into_iter()
        .map(|(a,)| a)
        .collect()
}

/// Another writer, after the held connection is given back (or closed), begins and commits as
/// usual: it is not inside whatever the batch left.
async fn next_writer_commits(db: &Db, a: &'static str) {
    let mut tx = db.begin().await.unwrap();
    sqlx::query("INSERT INTO kept (a) VALUES ($1)")
        .bind(a)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Batch after batch on one held connection: each commit ends its transaction, so the next
/// `BEGIN` works, and everything is there for readers and for the next writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_in_a_row_on_a_held_connection_each_commit() {
    let app = with_table(Backend::Sqlite).await;
    let db = &app.core.db;
    let mut held = HeldWriter::acquire(db).await.unwrap();
    for a in ["one", "two", "three"] {
        let (tx, start) = BatchTx::begin_sqlite(&mut held, &[], &[]).await.unwrap();
        assert!(start.head.is_some() && start.newest_policy.is_some());
        let mut group = StatementGroup::new(tx.backend());
        insert(&mut group, a);
        tx.commit(group).await.unwrap();
        assert!(held.usable());
    }
    drop(held);
    next_writer_commits(db, "after").await;
    assert_eq!(rows(db).await, ["after", "one", "three", "two"]);
}

/// A statement of the batch fails: nothing of the batch stays, and the connection, possibly
/// still inside the transaction, is closed rather than handed to the next writer (whose
/// `BEGIN` would otherwise fail, nested, or commit the batch's half).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_batch_keeps_nothing_and_its_connection_is_not_reused() {
    let app = with_table(Backend::Sqlite).await;
    let db = &app.core.db;
    let mut held = HeldWriter::acquire(db).await.unwrap();
    let (tx, _) = BatchTx::begin_sqlite(&mut held, &[], &[]).await.unwrap();
    let mut group = StatementGroup::new(tx.backend());
    insert(&mut group, "half");
    insert(&mut group, "half");
    assert!(tx.commit(group).await.is_err());
    assert!(!held.usable());
    assert!(
        BatchTx::begin_sqlite(&mut held, &[], &[]).await.is_err(),
        "a connection that may be in a transaction must not begin another"
    );
    drop(held);
    next_writer_commits(db, "after").await;
    assert_eq!(rows(db).await, ["after"]);
}

/// An early return drops the transaction without ending it: it rolls back, by the connection
/// being closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_dropped_unended_rolls_back() {
    let app = with_table(Backend::Sqlite).await;
    let db = &app.core.db;
    let mut held = HeldWriter::acquire(db).await.unwrap();
    let (mut tx, _) = BatchTx::begin_sqlite(&mut held, &[], &[]).await.unwrap();
    sqlx::query("INSERT INTO kept (a) VALUES ('dropped')")
        .execute(tx.conn())
        .await
        .unwrap();
    drop(tx);
    assert!(!held.usable());
    drop(held);
    next_writer_commits(db, "after").await;
    assert_eq!(rows(db).await, ["after"]);
}

/// A rollback (a batch decided under an outdated policy) ends the transaction and keeps the
/// connection for the next batch, on both engines.
async fn a_rollback_keeps_nothing_and_the_next_batch_commits(backend: Backend) {
    let app = with_table(backend).await;
    let db = &app.core.db;
    let mut held = match backend {
        Backend::Sqlite => Some(HeldWriter::acquire(db).await.unwrap()),
        Backend::Postgres => None,
    };
    for (a, keep) in [("rolled-back", false), ("committed", true)] {
        let (mut tx, _) = match held.as_mut() {
            Some(held) => BatchTx::begin_sqlite(held, &[], &[]).await.unwrap(),
            None => BatchTx::begin_postgres(db, &[]).await.unwrap(),
        };
        let mut group = StatementGroup::new(tx.backend());
        if keep {
            insert(&mut group, a);
            tx.commit(group).await.unwrap();
        } else {
            sqlx::query("INSERT INTO kept (a) VALUES ($1)")
                .bind(a)
                .execute(tx.conn())
                .await
                .unwrap();
            tx.rollback().await;
        }
        assert!(held.as_ref().is_none_or(HeldWriter::usable));
    }
    drop(held);
    next_writer_commits(db, "after").await;
    assert_eq!(rows(db).await, ["after", "committed"]);
}

on_both_backends!(a_rollback_keeps_nothing_and_the_next_batch_commits);
