//! Audit checkpoints: the server signs the chain head now and then, keeps the signatures outside
//! the database, serves them to whoever watches, and reads back the ones a verifier is given.
//! What a checkpoint is and how a chain is checked against one is in
//! [`crate::domain::checkpoint`]; this module owns the key, the file, the timing and the feed.
//!
//! # The key: its own, not the grant key
//!
//! Checkpoints are signed with an Ed25519 key of their own, `audit-checkpoint-key` in the data
//! directory (mode 0600, created on first start, never logged, never in the database), not
//! with the grant-signing key. Key separation by purpose: the grant key is trusted by
//! downstream systems to authorise actions and its public half is registered in the database
//! for the other replicas, which is exactly where the attacker checkpoints defend against can
//! write. A verifier must trust the checkpoint key from somewhere else (the data directory, a
//! pinned JWK file, or this server's feed over TLS), and a checkpoint key that leaks lets
//! someone forge evidence but never mint a grant, and the other way round. The distinct
//! `typ` keeps the two token kinds apart as well.
//!
//! # Where checkpoints live
//!
//! Appended, one JSON line each, to `audit-checkpoints.jsonl` in the data directory: opened in
//! append mode, locked against another process appending at the same time, `fsync`'d before
//! the checkpoint counts as taken, never rewritten or truncated. A line cut short by a crash is
//! left as it is (the next line starts on a line of its own) and skipped by readers, who say so.
//! The newest 1,000 are also kept in memory for the feed.
//!
//! # When
//!
//! A task checks the head every second: one indexed read. It signs a checkpoint when the head
//! has moved and either the interval (`COUNTERSIGN_CHECKPOINT_INTERVAL_SECONDS`, default 60)
//! has passed since the last one, or an important event was appended since
//! ([`crate::domain::checkpoint::is_important`]: changes to who may act, and everything a
//! person or the operator does). Important events are found by reading the chain itself (only
//! the events appended since the previous check), not by hooks in the use cases, so one
//! committed by the command line, or on another replica, is checkpointed just the same, and no
//! use case can forget to ask.
//!
//! Before signing a new head it checks that the chain still extends its own last checkpoint
//! and the head it saw a second ago (the event there still has the hash it had). If not, the
//! chain was shortened or rewritten: it logs an error, shows it on the admin audit page, and
//! signs nothing until that is resolved, so it never vouches for the rewritten chain. (After
//! restoring the database from a backup, which shortens the chain legitimately, move the file
//! aside: the checkpoints in it describe the chain that was lost.)
//!
//! # Several replicas
//!
//! Each replica has its own data directory, so its own key and file, and each checkpoints on
//! its own: no advisory lock, unlike the sweeper. Checkpointing writes nothing shared, so two
//! replicas doing it at once duplicate nothing that matters, and every checkpoint from every
//! replica is a statement about the same append-only chain, so all of them must hold together
//! and any one of them catches a truncation past it. One replica taking turns by lock would
//! scatter a single history across files and keys for no gain, and independent witnesses mean
//! erasing the evidence takes every replica's data directory. To verify with one pinned key,
//! give every replica the same `audit-checkpoint-key` file; otherwise trust each replica's key.
//!
//! # Who may read them: everyone
//!
//! `GET /api/v1/audit/checkpoints` needs no credentials, like Certificate Transparency's signed
//! tree heads and our own JWKS. A checkpoint reveals how many events the chain holds, a hash
//! that says nothing about their contents, and when; over time, the rate of activity. In return
//! a monitor outside the admins' reach (another team, another machine, a cron job) can keep its
//! own copies without holding a passkey, which is what makes deleting the server's file
//! pointless. An operator who considers the activity rate secret can restrict the path at the
//! proxy.
//!
//! # Verifying
//!
//! `countersign audit verify --checkpoint FILE|URL` trusts, for the checkpoints' signatures,
//! only keys it is given (`--checkpoint-key JWK_FILE|URL`) or, without those, the key in its own
//! data directory; never a key from the database, and never the key a checkpoint names by
//! itself. Trusting this server's feed URL as a key source trusts the server's data directory
//! through TLS: enough against someone who can only write the database; a key pinned in a file
//! is stronger still.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;
use serde::Serialize;

use super::{Countersign, Error};
use crate::config::Config;
use crate::domain::checkpoint::{
    find_tokens, verify, CheckpointKey, Head, SignedCheckpoint, SourcedCheckpoint,
    IMPORTANT_ACTORS, IMPORTANT_KINDS, PERSON_ACTOR_PREFIX,
};
use crate::domain::jose::PublicJwk;
use crate::store::audit;

/// The checkpoint file in the data directory.
pub const FILE_NAME: &str = "audit-checkpoints.jsonl";
/// The checkpoint key's seed in the data directory.
pub const KEY_FILE_NAME: &str = "audit-checkpoint-key";
/// Checkpoints the feed serves when not asked for a number.
pub const DEFAULT_FEED: usize = 100;
/// The most the feed serves at once (and how many are kept in memory).
pub const MAX_FEED: usize = 1000;
/// The most a checkpoint or key URL may answer with.
const MAX_FETCH_BYTES: usize = 16 << 20;

/// This process's checkpoint key, file and state.
pub struct Checkpoints {
    key: CheckpointKey,
    key_path: PathBuf,
    path: PathBuf,
    interval_ms: i64,
    /// Held for a whole check, so the background task and a direct call never sign twice.
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("key", &self.key)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    /// The file has been read.
    loaded: bool,
    /// The newest checkpoints, oldest first, at most [`MAX_FEED`].
    recent: VecDeque<SignedCheckpoint>,
    /// The head at the previous check.
    seen: Option<(i64, String)>,
    /// Events up to here were looked at for important ones.
    scanned_to: i64,
    /// An important event came after the last checkpoint.
    important: bool,
    /// Why the chain no longer extends what we saw, while that lasts.
    alarm: Option<String>,
    /// The file ends in a line cut short: the next one must start on a fresh line.
    torn_tail: bool,
}

/// What one check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// A new checkpoint was signed and appended.
    Signed(SignedCheckpoint),
    /// The head has not moved since the last checkpoint (or the chain is empty).
    Unchanged,
    /// The head moved, but neither the interval nor an important event calls for one yet.
    Waiting,
    /// The chain no longer extends the last checkpoint or the head seen before: nothing signed.
    Refused(String),
}

/// What `GET /api/v1/audit/checkpoints` answers. With its `keys` member it is also a JWK Set,
/// so a verifier that chooses to trust this server's key can point at the same URL.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointFeed {
    /// The public URL of this server.
    pub issuer: String,
    /// The key this replica signs with.
    pub keys: Vec<PublicJwk>,
    /// The newest checkpoints, oldest first.
    pub checkpoints: Vec<SignedCheckpoint>,
}

impl Checkpoints {
    /// Loads (or creates) the checkpoint key in the data directory. The file is read later, on
    /// first use, so a command that never checkpoints never reads it.
    pub fn open(config: &Config) -> Result<Self, Error> {
        let key_path = config.data_dir.join(KEY_FILE_NAME);
        let (seed, created) = super::load_or_create_seed(&key_path, || {
            CheckpointKey::generate(&mut OsRng).secret_bytes()
        })?;
        let key = CheckpointKey::from_secret_bytes(&seed).map_err(|e| {
            Error::internal(format!("{} is not a valid key: {e}", key_path.display()))
        })?;
        if created {
            tracing::info!(kid = key.kid(), "created a new audit checkpoint key");
        }
        let interval_ms =
            i64::try_from(config.checkpoint_interval.as_millis()).map_err(Error::internal)?;
        Ok(Self {
            key,
            key_path,
            path: config.data_dir.join(FILE_NAME),
            interval_ms,
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    /// The public key checkpoints are signed with.
    pub fn public_jwk(&self) -> PublicJwk {
        self.key.public_jwk()
    }

    /// Where the key's seed is kept.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// Where checkpoints are appended.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn load(&self, st: &mut State) -> Result<(), Error> {
        if st.loaded {
            return Ok(());
        }
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || read_file(&path))
            .await
            .map_err(Error::internal)?
            .map_err(|e| Error::internal(format!("cannot read {}: {e}", self.path.display())))?;
        for line in read.skipped {
            tracing::warn!(file = %self.path.display(), line, "not a checkpoint; skipped");
        }
        st.recent = read.recent;
        st.torn_tail = read.torn_tail;
        st.loaded = true;
        Ok(())
    }

    async fn append(&self, st: &mut State, c: &SignedCheckpoint) -> Result<(), Error> {
        let mut line = String::new();
        if st.torn_tail {
            line.push('\n');
        }
        line.push_str(&serde_json::to_string(c).map_err(Error::internal)?);
        line.push('\n');
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || append_durably(&path, line.as_bytes()))
            .await
            .map_err(Error::internal)?
            .map_err(|e| {
                Error::internal(format!("cannot append to {}: {e}", self.path.display()))
            })?;
        st.torn_tail = false;
        st.recent.push_back(c.clone());
        if st.recent.len() > MAX_FEED {
            st.recent.pop_front();
        }
        Ok(())
    }
}

impl Countersign {
    /// One check of the chain head (the background task calls this every second; tests call it
    /// directly): signs and appends a checkpoint when one is due. See the module docs for when.
    pub async fn checkpoint_tick(&self) -> Result<Tick, Error> {
        let cp = &self.checkpoints;
        let mut st = cp.state.lock().await;
        cp.load(&mut st).await?;
        let Some((seq, hash)) = audit::last_event(self.db.reader()).await? else {
            return Ok(Tick::Unchanged);
        };
        let last = st.recent.back().cloned();
        if last
            .as_ref()
            .is_some_and(|l| l.seq == seq && l.hash == hash)
        {
            st.alarm = None;
            st.seen = Some((seq, hash));
            return Ok(Tick::Unchanged);
        }

        // Never vouch for a chain that has lost what we vouched for (or saw) before.
        let mut anchors = Vec::new();
        if let Some(l) = &last {
            anchors.push((l.seq, l.hash.clone(), l.to_string()));
        }
        if let Some((s, h)) = st.seen.clone() {
            if last.as_ref().is_none_or(|l| s > l.seq) {
                anchors.push((
                    s,
                    h,
                    format!("the head seen at the previous check (event {s})"),
                ));
            }
        }
        for (at, expected, what) in anchors {
            let found = if at > seq {
                None
            } else {
                audit::hash_at(self.db.reader(), at).await?
            };
            if found.as_deref() != Some(expected.as_str()) {
                let why = match found {
                    None => format!("the chain now ends at event {seq}"),
                    Some(h) => format!("event {at} now has hash {h}"),
                };
                let reason = format!(
                    "the audit chain no longer extends {what}: {why}; no checkpoint is signed \
                     until this is resolved"
                );
                if st.alarm.as_deref() != Some(reason.as_str()) {
                    tracing::error!(%reason, "audit chain shortened or rewritten");
                }
                st.alarm = Some(reason.clone());
                return Ok(Tick::Refused(reason));
            }
        }
        st.alarm = None;
        st.seen = Some((seq, hash.clone()));

        if !st.important {
            let from = st.scanned_to.max(last.as_ref().map_or(0, |l| l.seq));
            if from < seq
                && audit::first_of(
                    self.db.reader(),
                    from,
                    seq,
                    IMPORTANT_KINDS,
                    IMPORTANT_ACTORS,
                    PERSON_ACTOR_PREFIX,
                )
                .await?
                .is_some()
            {
                st.important = true;
            }
        }
        st.scanned_to = st.scanned_to.max(seq);
        let now = self.now();
        let due = last
            .as_ref()
            .is_none_or(|l| now.saturating_sub(l.time) >= cp.interval_ms);
        if !due && !st.important {
            return Ok(Tick::Waiting);
        }
        let signed = cp
            .key
            .sign(
                &self.issuer(),
                &Head {
                    seq,
                    hash,
                    time: now,
                },
            )
            .map_err(Error::internal)?;
        cp.append(&mut st, &signed).await?;
        st.important = false;
        Ok(Tick::Signed(signed))
    }

    /// The newest checkpoint this process has taken (or found in its file).
    pub async fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, Error> {
        let mut st = self.checkpoints.state.lock().await;
        self.checkpoints.load(&mut st).await?;
        Ok(st.recent.back().cloned())
    }

    /// Why the chain no longer extends this process's checkpoints, if it does not (as of the
    /// last check).
    pub async fn checkpoint_alarm(&self) -> Option<String> {
        self.checkpoints.state.lock().await.alarm.clone()
    }

    /// The newest `limit` checkpoints (1 to [`MAX_FEED`]) and the key they are signed with.
    pub async fn checkpoint_feed(&self, limit: usize) -> Result<CheckpointFeed, Error> {
        if !(1..=MAX_FEED).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                format!("limit is between 1 and {MAX_FEED}"),
            ));
        }
        let mut st = self.checkpoints.state.lock().await;
        self.checkpoints.load(&mut st).await?;
        let skip = st.recent.len().saturating_sub(limit);
        Ok(CheckpointFeed {
            issuer: self.issuer(),
            keys: vec![self.checkpoints.public_jwk()],
            checkpoints: st.recent.iter().skip(skip).cloned().collect(),
        })
    }
}

/// Checks the head every `period` until the process ends (on every replica: see the module
/// docs).
pub async fn run(core: Arc<Countersign>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = core.checkpoint_tick().await {
            tracing::warn!(error = %e.for_log(), "audit checkpoint failed");
        }
    }
}

struct FileContents {
    recent: VecDeque<SignedCheckpoint>,
    skipped: Vec<usize>,
    torn_tail: bool,
}

fn read_file(path: &Path) -> std::io::Result<FileContents> {
    let mut out = FileContents {
        recent: VecDeque::new(),
        skipped: Vec::new(),
        torn_tail: false,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        number += 1;
        out.torn_tail = !line.ends_with('\n');
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<SignedCheckpoint>(&line) {
            Ok(c) => {
                out.recent.push_back(c);
                if out.recent.len() > MAX_FEED {
                    out.recent.pop_front();
                }
            }
            Err(_) => out.skipped.push(number),
        }
    }
    Ok(out)
}

/// Appends `bytes` and makes them durable before returning: the file's data, and on its
/// creation the directory entry too.
fn append_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    // Another process appending at the same moment (two servers given one data directory by
    // mistake) waits rather than interleaving its line with ours.
    file.lock()?;
    let created = file.metadata()?.len() == 0;
    file.write_all(bytes)?;
    file.sync_data()?;
    if created {
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

/// A file's text, or an http(s) URL's answer. `field` names the option it was given to.
pub async fn read_source(field: &str, source: &str) -> Result<String, Error> {
    if source.starts_with("http://") || source.starts_with("https://") {
        return fetch(field, source).await;
    }
    std::fs::read_to_string(source)
        .map_err(|e| Error::invalid(field, format!("{field}: cannot read {source}: {e}")))
}

async fn fetch(field: &str, url: &str) -> Result<String, Error> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::invalid(field, format!("{field}: cannot fetch {url}: {e}"))
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| failed(&e))?;
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| failed(&e))?;
    if !response.status().is_success() {
        return Err(failed(&format!("it answered {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| failed(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_FETCH_BYTES {
            return Err(failed(&format!(
                "its answer is larger than {MAX_FETCH_BYTES} bytes"
            )));
        }
    }
    String::from_utf8(body).map_err(|_| failed(&"its answer is not UTF-8 text"))
}

/// A key a verifier trusts, and where it came from.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// The key.
    pub jwk: PublicJwk,
    /// A file, a URL, or the data directory's key file.
    pub from: String,
}

/// The keys in each source: a JWK, a JWK Set, or anything with a `keys` member (such as the
/// checkpoint feed).
pub async fn read_trusted_keys(sources: &[String]) -> Result<Vec<TrustedKey>, Error> {
    const FIELD: &str = "checkpoint-key";
    let mut keys = Vec::new();
    for source in sources {
        let text = read_source(FIELD, source).await?;
        let bad = |why: String| Error::invalid(FIELD, format!("{FIELD}: {source} {why}"));
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|_| bad("is not JSON (a JWK or a JWK Set)".into()))?;
        let found: Vec<&serde_json::Value> = match doc.get("keys") {
            Some(serde_json::Value::Array(list)) => list.iter().collect(),
            Some(_) => return Err(bad("has a \"keys\" member that is not a list".into())),
            None => vec![&doc],
        };
        if found.is_empty() {
            return Err(bad("holds no key".into()));
        }
        for k in found {
            let jwk = PublicJwk::from_value(k)
                .map_err(|e| bad(format!("holds a key that is not usable: {e}")))?;
            keys.push(TrustedKey {
                jwk,
                from: source.clone(),
            });
        }
    }
    Ok(keys)
}

/// Checkpoints read from the verifier's sources, each verified against the trusted keys.
#[derive(Debug, Clone, Default)]
pub struct ReadCheckpoints {
    /// Verified, with where each came from.
    pub checkpoints: Vec<SourcedCheckpoint>,
    /// Lines or entries that were not checkpoints at all (`source place`).
    pub skipped: Vec<String>,
}

/// Reads every source (a file or URL holding checkpoints, in any of the forms we hand them
/// out) and verifies each checkpoint's signature. A checkpoint that does not verify under a
/// trusted key is an error naming it: a verifier never proceeds past evidence it was given and
/// cannot trust.
pub async fn read_checkpoints(
    sources: &[String],
    trusted: &[TrustedKey],
) -> Result<ReadCheckpoints, Error> {
    const FIELD: &str = "checkpoint";
    let keys: Vec<PublicJwk> = trusted.iter().map(|k| k.jwk.clone()).collect();
    let trusted_list = trusted
        .iter()
        .map(|k| format!("{} from {}", k.jwk.thumbprint(), k.from))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = ReadCheckpoints::default();
    for source in sources {
        let text = read_source(FIELD, source).await?;
        let found = find_tokens(&text);
        if found.tokens.is_empty() {
            return Err(Error::invalid(
                FIELD,
                format!("{FIELD}: {source} holds no checkpoint"),
            ));
        }
        out.skipped.extend(
            found
                .skipped
                .iter()
                .map(|place| format!("{source} {place}")),
        );
        for (place, token) in found.tokens {
            let checkpoint = verify(&token, &keys).map_err(|e| {
                Error::invalid(
                    FIELD,
                    format!(
                        "{FIELD} REFUSED: the one in {source} {place} {e} (trusted: {trusted_list})"
                    ),
                )
            })?;
            out.checkpoints.push(SourcedCheckpoint {
                checkpoint,
                source: format!("{source} {place}"),
            });
        }
    }
    Ok(out)
}
