//! Group commit for request intake.
//!
//! On SQLite every statement is a hand-off to the connection's thread and back, and there is
//! one writer, so intake throughput is bounded by hand-offs per transaction rather than by CPU
//! (see the README's benchmark). Intake therefore computes everything it will write — the
//! request row, its audit events, a grant if policy allowed it, its idempotency key — before
//! the transaction, and hands it to one writer task per process. The writer takes whatever has
//! queued (up to [`MAX_BATCH`]) and writes it in one transaction with multi-row inserts: the
//! hand-offs are paid once per batch, not once per request. A request that arrives alone is a
//! batch of one, so there is one code path.
//!
//! Nothing is lost or mixed up by batching: each request's rows and events commit together
//! (all of a batch commits or none), the audit chain keeps its order, and a lost idempotency
//! race is reported to that request alone. If a batch fails, each of its requests is retried
//! in a transaction of its own, so one bad request never fails its neighbours.
//!
//! A request is checked before it is queued, but it commits here, later. So the first thing a
//! batch's transaction does is read (and, on PostgreSQL, hold) the status and epoch of the
//! agents it writes for, and it drops every job authorised under an epoch that is no longer the
//! agent's: a suspension or key change that committed while the job waited in the queue wins,
//! and one that comes after waits for this transaction and then undoes what it wrote (see
//! `agents`, "The kill switch holds by construction").
//!
//! The last thing it does, holding the audit chain's head, is read the newest policy version
//! (SQLite, whose write transaction holds the whole database from its start, reads it with the
//! agents instead, in the same statement: see `store::intake`):
//! intake decides with the policy it cached, so a request decided under a version that is no
//! longer the newest is not written but decided again. Applying a policy appends to the chain
//! too, so it commits either before that read (and is seen) or after this batch (whose requests
//! were then decided under the policy in force when they committed).

use std::collections::{HashMap, HashSet};

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};

use super::Error;
use crate::clock::Millis;
use crate::domain::audit_kind::EventKind;
use crate::domain::lifecycle::{AgentStatus, RequestStatus};
use crate::store::audit::{self, HeadSeen, Prepared};
use crate::store::grants::{self, GrantRow};
use crate::store::group::StatementGroup;
use crate::store::guards::{Ask, IntakeLoad};
use crate::store::intake::{BatchStart, BatchTx, HeldWriter};
use crate::store::requests::{self, IdempotencyClaim, RequestRow};
use crate::store::{agents, standing, Backend, Db, StoreError};

/// The most requests written in one transaction.
pub const MAX_BATCH: usize = 64;

/// How many requests may wait for the writer before intake waits to queue more.
const QUEUE: usize = 4 * MAX_BATCH;

/// How long the writer keeps SQLite's write connection while batches keep coming, before it
/// lets any other writer (a decision, a suspension) have a turn: the most such a writer waits
/// for intake, besides the batch in progress.
const HOLD_AT_MOST: Duration = Duration::from_millis(5);

/// Everything one new request writes.
#[derive(Debug)]
pub struct IntakeJob {
    /// The request row.
    pub request: RequestRow,
    /// Its idempotency key, if the agent sent one.
    pub claim: Option<IdempotencyClaim>,
    /// Its audit events, in order, prepared for hashing (outside the writer's transaction).
    pub events: Vec<Prepared>,
    /// The grant, when policy allowed the action outright.
    pub grant: Option<GrantRow>,
    /// Record the agent's activity at this time.
    pub touch_agent_at: Option<Millis>,
    /// The agent's epoch when its credential was checked: the job is written only if the agent
    /// is still active at this epoch.
    pub agent_epoch: i64,
    /// The agent's parent when it was decided (policy may depend on the lineage): the job is
    /// written only if the parent is still the same.
    pub agent_parent: Option<String>,
    /// The standing approval that approves this request: the job is written only if one of its
    /// uses can be taken, in this transaction (see `store::standing`).
    pub standing_id: Option<String>,
    /// For a request that would wait for people: what the guards check first, here.
    pub probe: Option<Probe>,
}

/// What the fatigue guards check, in the writer's transaction, before a request that would
/// wait for people is written (see `service::guards`). Checked here rather than before the
/// job is queued: one read for the whole batch instead of one per request, and two identical
/// requests at once collapse into one as surely as two in a row.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Answer with the agent's identical pending request instead, if there is one.
    pub collapse_identical: bool,
    /// Hand the request back when a person denied this agent a request since then (intake
    /// then compares the two); `Millis::MAX` when there is no cooldown, or intake compared.
    pub denied_since: Millis,
}

/// How a job was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Committed.
    Stored,
    /// Not written: another request already holds its idempotency key.
    IdempotencyKeyTaken,
    /// Not written: the agent was suspended, its credential changed, or it was given another
    /// parent, after the job was authorised.
    AgentChanged,
    /// Not written: the standing approval that was to approve it had no use left, or ended,
    /// by the time it was written. The request should wait for a human instead.
    StandingLost,
    /// Not written: it was decided under a policy version that is no longer the newest. The
    /// request should be decided again under the new one.
    PolicyChanged,
    /// Not written: the agent already waits for exactly this, in the request with this id.
    Identical(String),
    /// Not written: a person denied this agent a request within the cooldown; intake compares
    /// the two before asking again.
    DeniedRecently,
}

type Reply = oneshot::Sender<Result<Written, Error>>;

/// The handle intake uses to write.
#[derive(Debug, Clone)]
pub struct IntakeWriter {
    queue: mpsc::Sender<(IntakeJob, Reply)>,
}

impl IntakeWriter {
    /// Starts the writer task for this database.
    ///
    /// On SQLite the task runs on a thread of its own: each of its statements is a hand-off to
    /// SQLite's thread and back, and a task woken from another thread waits in tokio's shared
    /// queue behind the HTTP work already there (measured: 0.5 ms of a batch's 2.7 ms went on
    /// `BEGIN` alone under load). On its own thread the writer is back at work as soon as the
    /// operating system runs it. On PostgreSQL it stays on the server's runtime: its
    /// connections are sockets registered with the runtime that opens them, which must outlive
    /// them (and they are shared with every other writer).
    pub fn start(db: Db) -> Self {
        if db.backend() == Backend::Sqlite {
            match Self::on_own_thread(db.clone()) {
                Ok(writer) => return writer,
                Err(e) => tracing::warn!(
                    error = %e,
                    "could not start the intake writer's thread; it runs among the server's tasks"
                ),
            }
        }
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, jobs));
        Self { queue }
    }

    /// The writer on a thread of its own, with a single-threaded runtime; the thread ends when
    /// the last handle is dropped.
    fn on_own_thread(db: Db) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (queue, jobs) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("intake-writer".into())
            .spawn(move || runtime.block_on(run(db, jobs)))?;
        Ok(Self { queue })
    }

    /// Writes one request's rows; returns once they are committed.
    pub async fn write(&self, job: IntakeJob) -> Result<Written, Error> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((job, reply))
            .await
            .map_err(|_| Error::internal("the intake writer has stopped"))?;
        answer
            .await
            .map_err(|_| Error::internal("the intake writer dropped a request"))?
    }
}

async fn run(db: Db, mut jobs: mpsc::Receiver<(IntakeJob, Reply)>) {
    let mut lane = Lane::for_backend(db.backend());
    loop {
        let first = match jobs.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Empty) => {
                // Nothing more to write for now: let other writers have the connection.
                lane.idle();
                match jobs.recv().await {
                    Some(job) => job,
                    None => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let all: Vec<&IntakeJob> = batch.iter().map(|(job, _)| job).collect();
        match write_batch(&mut lane, &db, &all).await {
            Ok(results) => {
                for ((_, reply), result) in batch.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                if batch.len() > 1 {
                    tracing::warn!(error = %super::error::chain(&e), size = batch.len(), "intake batch failed; writing its requests one by one");
                }
                for (job, reply) in batch {
                    let result = match write_batch(&mut lane, &db, &[&job]).await {
                        Ok(mut r) => Ok(r.pop().unwrap_or(Written::Stored)),
                        Err(e) => Err(Error::from(e)),
                    };
                    let _ = reply.send(result);
                }
            }
        }
    }
}

/// Where the writer's transactions run.
enum Lane {
    /// SQLite's one write connection, kept while batches keep coming (see `store::intake`),
    /// with the time it was taken.
    Sqlite(Option<(HeldWriter, Instant)>),
    /// A pooled PostgreSQL connection per batch.
    Postgres,
}

impl Lane {
    fn for_backend(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Lane::Sqlite(None),
            Backend::Postgres => Lane::Postgres,
        }
    }

    /// Begins a batch's transaction and reads what it reads first.
    async fn begin(
        &mut self,
        db: &Db,
        agent_ids: &[&str],
        asks: &[Ask<'_>],
    ) -> Result<(BatchTx<'_>, BatchStart), StoreError> {
        match self {
            Lane::Postgres => BatchTx::begin_postgres(db, agent_ids).await,
            Lane::Sqlite(held) => {
                // A connection held long enough is given back first (the pool serves whoever
                // waited before us), and one that may be inside a transaction is closed.
                let kept = held
                    .take()
                    .filter(|(h, since)| h.usable() && since.elapsed() < HOLD_AT_MOST);
                let (conn, _) = match kept {
                    Some(kept) => held.insert(kept),
                    None => held.insert((HeldWriter::acquire(db).await?, Instant::now())),
                };
                BatchTx::begin_sqlite(conn, agent_ids, asks).await
            }
        }
    }

    /// The queue is empty: give the connection back.
    fn idle(&mut self) {
        if let Lane::Sqlite(held) = self {
            *held = None;
        }
    }
}

async fn write_batch(
    lane: &mut Lane,
    db: &Db,
    jobs: &[&IntakeJob],
) -> Result<Vec<Written>, StoreError> {
    // Requests found decided under an older policy than the newest are left out, and the rest
    // written again; each round leaves out at least one more, so this ends.
    let mut outdated = HashSet::new();
    loop {
        match write_attempt(lane, db, jobs, &outdated).await? {
            Attempt::Committed(results) => return Ok(results),
            Attempt::PolicyChanged(ids) => outdated.extend(ids),
        }
    }
}

/// How one attempt at writing a batch ended.
enum Attempt<'a> {
    /// Committed, with each job's outcome.
    Committed(Vec<Written>),
    /// Rolled back: these requests were decided under a policy that is no longer the newest.
    PolicyChanged(Vec<&'a str>),
}

async fn write_attempt<'a>(
    lane: &mut Lane,
    db: &Db,
    jobs: &[&'a IntakeJob],
    outdated: &HashSet<&'a str>,
) -> Result<Attempt<'a>, StoreError> {
    // First, before anything else is locked: the agents as this transaction sees them, held
    // until it commits (see the module docs). Until it commits, every early return rolls the
    // transaction back.
    let mut agent_ids: Vec<&str> = jobs.iter().map(|j| j.request.agent_id.as_str()).collect();
    agent_ids.sort_unstable();
    agent_ids.dedup();
    // What the guards check for requests that would wait for people (see [`Probe`]): on
    // SQLite read with the agents, on PostgreSQL once they are held.
    let probed: Vec<(&'a IntakeJob, Probe)> = jobs
        .iter()
        .filter_map(|j| j.probe.map(|p| (*j, p)))
        .collect();
    let asks: Vec<Ask> = probed
        .iter()
        .map(|(j, p)| Ask {
            agent_id: &j.request.agent_id,
            action_hash: &j.request.action_hash,
            now: j.request.created_at,
            denied_since: p.denied_since,
        })
        .collect();
    let (mut tx, start) = lane.begin(db, &agent_ids, &asks).await?;
    let current = &start.agents;
    let current_policy = |j: &IntakeJob| !outdated.contains(j.request.id.as_str());
    let live = |j: &IntakeJob| {
        current_policy(j)
            && current.get(&j.request.agent_id).is_some_and(|a| {
                a.status == AgentStatus::Active
                    && a.epoch == j.agent_epoch
                    && a.parent_id == j.agent_parent
            })
    };
    // Uses of standing approvals: one conditional write each, in job order, so when several
    // jobs race for the last use, the first in the batch wins and the others wait for a human.
    let mut uses_left: HashMap<&str, i64> = HashMap::new();
    for j in jobs.iter().filter(|j| live(j)) {
        if let Some(id) = &j.standing_id {
            if let Some(left) = standing::use_one(tx.conn(), id, j.request.created_at).await? {
                uses_left.insert(j.request.id.as_str(), left);
            }
        }
    }
    let standing_holds =
        |j: &IntakeJob| j.standing_id.is_none() || uses_left.contains_key(j.request.id.as_str());
    // The chain's head, held from here on PostgreSQL, with the guards' loads.
    let (head, loads) = match (start.head, start.loads) {
        (Some(head), Some(loads)) => (head, loads),
        _ => tx.hold_head(&asks).await?,
    };
    let held_back = held_back(probed.into_iter().zip(loads).filter(|((j, _), _)| live(j)));
    let claims: Vec<IdempotencyClaim> = jobs
        .iter()
        .filter(|j| live(j) && standing_holds(j) && !held_back.contains_key(j.request.id.as_str()))
        .filter_map(|j| j.claim.clone())
        .collect();
    let won: HashSet<String> = requests::idempotency_claim(tx.conn(), &claims)
        .await?
        .into_iter()
        .collect();
    let results: Vec<Written> = jobs
        .iter()
        .map(|j| match j.claim {
            _ if !current_policy(j) => Written::PolicyChanged,
            _ if !live(j) => Written::AgentChanged,
            _ if !standing_holds(j) => Written::StandingLost,
            _ if held_back.contains_key(j.request.id.as_str()) => {
                held_back[j.request.id.as_str()].clone()
            }
            Some(_) if !won.contains(&j.request.id) => Written::IdempotencyKeyTaken,
            _ => Written::Stored,
        })
        .collect();
    // A use taken for a job that then lost its idempotency key is given back: nothing is
    // written for it.
    for (j, r) in jobs.iter().zip(&results) {
        if *r == Written::IdempotencyKeyTaken {
            if let Some(id) = j.standing_id.as_deref() {
                if uses_left.remove(j.request.id.as_str()).is_some() {
                    standing::give_back(tx.conn(), id).await?;
                }
            }
        }
    }
    let kept: Vec<&IntakeJob> = jobs
        .iter()
        .zip(&results)
        .filter(|(_, r)| **r == Written::Stored)
        .map(|(j, _)| *j)
        .collect();

    // A `standing.used` event learns the uses left here, where the use was taken: those few
    // events are restated; every other event is appended as intake prepared it.
    let used = |p: &Prepared| p.event.kind == EventKind::StandingUsed;
    let mut restated: HashMap<&str, Prepared> = HashMap::new();
    for j in &kept {
        if let Some(left) = uses_left.get(j.request.id.as_str()) {
            if let Some(p) = j.events.iter().find(|p| used(p)) {
                let mut e = p.event.clone();
                e.data["uses_left"] = (*left).into();
                restated.insert(j.request.id.as_str(), e.prepared());
            }
        }
    }
    let events: Vec<&Prepared> = kept
        .iter()
        .flat_map(|j| {
            let restated = restated.get(j.request.id.as_str());
            j.events
                .iter()
                .map(move |p| restated.filter(|_| used(p)).unwrap_or(p))
        })
        .collect();
    // Everything the batch writes, sent as one (see `store::group`).
    let mut group = StatementGroup::new(tx.backend());
    let new_requests: Vec<&RequestRow> = kept.iter().map(|j| &j.request).collect();
    requests::first_asks_rows(&mut group, &new_requests);
    requests::insert_rows(&mut group, new_requests)?;
    if !events.is_empty() {
        audit::append_rows(&mut group, HeadSeen::Read(head), &events);
    }
    grants::insert_rows(
        &mut group,
        kept.iter().filter_map(|j| j.grant.as_ref()).collect(),
    )?;
    // Activity is recorded at most every so often per agent (intake decides when); the batch's
    // latest time stands for all of them.
    let mut touched: Vec<&str> = kept
        .iter()
        .filter(|j| j.touch_agent_at.is_some())
        .map(|j| j.request.agent_id.as_str())
        .collect();
    touched.sort_unstable();
    touched.dedup();
    if let Some(at) = kept.iter().filter_map(|j| j.touch_agent_at).max() {
        agents::touch_rows(&mut group, touched, at);
    }
    // Other replicas' open inboxes learn of new requests that wait for people the same way
    // their waiting agents learn of decisions (see `waiters`).
    // (SQLite has one process: nobody else to tell.)
    let pending: Vec<&str> = kept
        .iter()
        .filter(|j| j.request.status == RequestStatus::Pending)
        .map(|j| j.request.id.as_str())
        .collect();
    // Last, with the audit chain's head held (so no policy can be applied before this
    // transaction ends, on any replica: applying one appends to the chain too): the policy each
    // request was decided under must be the newest. (SQLite read it at the start, under the
    // database lock the whole transaction holds, so its writes wait for the commit and go with
    // it; PostgreSQL reads it in the statement that writes the batch; see `store::intake`.)
    // Intake decides with the version it cached (see `policies`), so after a policy change the
    // first batch may hold requests decided under the old one; they are not written but
    // decided again.
    let newest = match start.newest_policy {
        Some(newest) => newest,
        None => {
            let written = std::mem::replace(&mut group, StatementGroup::new(tx.backend()));
            tx.write_reading_policy(written, super::waiters::CHANNEL, &pending)
                .await?
        }
    };
    let (version, hash) = newest.unwrap_or_else(|| (0, String::new()));
    let stale: Vec<&'a str> = kept
        .iter()
        .filter(|j| {
            j.request.policy_version != version || (version != 0 && j.request.policy_hash != hash)
        })
        .map(|j| j.request.id.as_str())
        .collect();
    if !stale.is_empty() {
        tx.rollback().await;
        return Ok(Attempt::PolicyChanged(stale));
    }
    tx.commit(group).await?;
    Ok(Attempt::Committed(results))
}

/// The jobs the guards hold back, by request id, with why, from their loads. A job identical
/// to one earlier in the batch collapses into it as into one already stored, unless that one
/// might still lose its idempotency key (and so not be written).
fn held_back<'a>(
    probed: impl Iterator<Item = ((&'a IntakeJob, Probe), IntakeLoad)>,
) -> HashMap<&'a str, Written> {
    let mut held_back = HashMap::new();
    let mut first_in_batch: HashMap<(&str, &str), &str> = HashMap::new();
    for ((j, p), load) in probed {
        let key = (j.request.agent_id.as_str(), j.request.action_hash.as_str());
        let identical = load
            .identical_pending
            .or_else(|| first_in_batch.get(&key).map(|id| id.to_string()));
        match identical {
            Some(id) if p.collapse_identical => {
                held_back.insert(j.request.id.as_str(), Written::Identical(id));
            }
            _ if load.denied_recently => {
                held_back.insert(j.request.id.as_str(), Written::DeniedRecently);
            }
            _ if j.claim.is_none() => {
                first_in_batch.entry(key).or_insert(j.request.id.as_str());
            }
            _ => {}
        }
    }
    held_back
}
