//! The fatigue guards at work (the rules are in [`crate::domain::guards`]): reading and
//! changing their settings, and the checks intake, mail and decisions make.
//!
//! Settings are read on every request, so each process keeps them for [`CACHE_MS`]; a change
//! made on this process applies at once, one made on another replica within that time.
//!
//! The cap on an agent's waiting requests is checked without counting them on every request
//! (a count walks one index entry per waiting request: an agent near a cap of 100,000 paid
//! for 100,000 on each call). Each process keeps, per agent, an upper bound: the last count,
//! plus every request it has added since. A request is let in at once while that bound is
//! below the cap; at the cap, or once the count is [`COUNT_FRESH_MS`] old, it counts again.
//! So an agent that was refused is counted afresh on its next call (an approval may have made
//! room), and a bound this process holds is never below the truth for longer than the requests
//! other replicas add in that time. Like the cap itself, this is a guard: concurrent requests,
//! here or on other replicas, may overshoot it by a few.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::people::SignedIn;
use super::{Countersign, Error};
use crate::clock::Millis;
use crate::domain::audit_kind::EventKind;
use crate::domain::guards::{action_key, Guards};
use crate::store::guards::{self as rows, IntakeLoad};
use crate::store::{self, audit};

/// How long a process keeps the settings it read.
pub const CACHE_MS: i64 = 2_000;

/// This process's copy of the settings.
#[derive(Debug, Default)]
pub struct GuardsCache(Mutex<Option<(Millis, Guards)>>);

impl GuardsCache {
    fn get(&self, now: Millis) -> Option<Guards> {
        let slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.filter(|(at, _)| now - at < CACHE_MS).map(|(_, g)| g)
    }

    fn put(&self, now: Millis, guards: Guards) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, guards));
    }
}

/// How long a count of an agent's waiting requests stands in for counting again.
pub const COUNT_FRESH_MS: i64 = 1_000;

/// Past this many agents, the bounds are forgotten and rebuilt from counts.
const BOUNDS_KEPT: usize = 100_000;

/// Per agent, at most how many of its requests are waiting, as far as this process knows (see
/// the module docs).
#[derive(Debug, Default)]
pub struct PendingBounds(Mutex<HashMap<String, Bound>>);

#[derive(Debug, Clone, Copy)]
struct Bound {
    at_most: i64,
    counted_at: Millis,
}

impl PendingBounds {
    /// The bound for this agent, if one counted recently enough is known.
    fn get(&self, agent_id: &str, now: Millis) -> Option<i64> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(agent_id)
            .filter(|b| now - b.counted_at < COUNT_FRESH_MS)
            .map(|b| b.at_most)
    }

    /// A fresh count.
    fn counted(&self, agent_id: &str, n: i64, now: Millis) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= BOUNDS_KEPT && !map.contains_key(agent_id) {
            map.clear();
        }
        map.insert(
            agent_id.to_string(),
            Bound {
                at_most: n,
                counted_at: now,
            },
        );
    }

    /// This process has just committed one more waiting request for the agent.
    pub(crate) fn added(&self, agent_id: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get_mut(agent_id) {
            b.at_most += 1;
        }
    }
}

impl Countersign {
    /// The guards in force, for the service's own checks (people see them through
    /// [`Self::guards_seen_by`]).
    pub async fn guards(&self) -> Result<Guards, Error> {
        let now = self.now();
        if let Some(g) = self.guards_cache.get(now) {
            return Ok(g);
        }
        let stored = rows::settings(self.db.reader()).await?;
        let g = self.config.guard_defaults.with_stored(&stored);
        self.guards_cache.put(now, g);
        Ok(g)
    }

    /// The guards in force, for an admin's settings page (admins only: what the guards are set
    /// to tells an agent how to stay just under them).
    pub async fn guards_seen_by(&self, who: &SignedIn) -> Result<Guards, Error> {
        if !who.person.role.is_admin() {
            return Err(Error::Forbidden("only admins can see the guards".into()));
        }
        self.guards().await
    }

    /// An admin changes the guards; recorded on the audit chain with the old and new values.
    pub async fn set_guards(&self, who: &SignedIn, new: Guards) -> Result<Guards, Error> {
        if !who.person.role.is_admin() {
            return Err(Error::Forbidden("only admins can change the guards".into()));
        }
        self.apply_guards(new, &format!("user:{}", who.person.id))
            .await
    }

    /// Changes the guards on behalf of `actor` (an admin, or the command line).
    pub async fn apply_guards(&self, new: Guards, actor: &str) -> Result<Guards, Error> {
        new.validate()
            .map_err(|e| Error::invalid(e.field, e.detail))?;
        let old = self.guards().await?;
        let now = self.now();
        let mut tx = self.db.begin().await?;
        for (key, value) in new.to_stored() {
            rows::put_setting(&mut tx, key, &value, actor, now).await?;
        }
        audit::append(
            &mut tx,
            now,
            actor,
            EventKind::SettingsChanged,
            None,
            &json!({ "guards": { "from": old, "to": new } }),
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        self.guards_cache.put(now, new);
        Ok(new)
    }

    /// What the guards need to know about the agent's requests before it adds one that would
    /// wait for people, in one read (intake asks only at the pending cap; otherwise the writer
    /// asks, for its whole batch: see `writer::Probe`). An identical pending request is only
    /// reported when requests collapse, and recent denials only while there is a cooldown.
    pub(crate) async fn intake_load(
        &self,
        guards: &Guards,
        agent_id: &str,
        action_hash: &str,
        now: Millis,
    ) -> Result<IntakeLoad, Error> {
        let denied_since = guards.denied_since(now);
        let mut conn = self.db.read_conn().await?;
        let ask = rows::Ask {
            agent_id,
            action_hash,
            now,
            denied_since,
        };
        let mut load = rows::intake_load(&mut conn, ask).await?;
        if !guards.collapse_identical {
            load.identical_pending = None;
        }
        Ok(load)
    }

    /// Refuses a request that would wait for a human when the agent already has the maximum
    /// waiting: approvers should not be flooded by one agent. The answer says when its first
    /// waiting request expires, which is when a place frees up at the latest. Counts only when
    /// this process's bound cannot tell (see the module docs).
    pub(crate) async fn check_pending_cap(
        &self,
        guards: &Guards,
        agent_id: &str,
        now: Millis,
    ) -> Result<(), Error> {
        let cap = guards.max_pending_per_agent;
        if self
            .pending_bounds
            .get(agent_id, now)
            .is_some_and(|at_most| at_most < i64::from(cap))
        {
            return Ok(());
        }
        let pending = rows::pending_count(self.db.reader(), agent_id, cap).await?;
        self.pending_bounds.counted(agent_id, pending, now);
        if pending >= i64::from(cap) {
            let retry_after = rows::first_expiry(self.db.reader(), agent_id)
                .await?
                .map(|at| (at - now).max(1000) / 1000)
                .unwrap_or(1);
            return Err(Error::RateLimited {
                retry_after: u64::try_from(retry_after).unwrap_or(1),
            });
        }
        Ok(())
    }

    /// Refuses an action a person denied this agent within the cooldown; the error says when
    /// it may ask again. Intake asks only when [`IntakeLoad::denied_recently`] says there is a
    /// denial to compare with.
    pub(crate) async fn check_cooldown(
        &self,
        guards: &Guards,
        agent_id: &str,
        action: &Value,
        now: Millis,
    ) -> Result<(), Error> {
        if guards.deny_cooldown_seconds == 0 {
            return Ok(());
        }
        let window = i64::from(guards.deny_cooldown_seconds) * 1000;
        let key = action_key(action);
        for (body, decided_at) in
            rows::denied_by_people_since(self.db.reader(), agent_id, now - window).await?
        {
            let body: Value = serde_json::from_str(&body).map_err(Error::internal)?;
            if body.get("action").is_some_and(|a| action_key(a) == key) {
                let left = (decided_at + window - now).max(1000) / 1000;
                return Err(Error::RateLimited {
                    retry_after: u64::try_from(left).unwrap_or(1),
                });
            }
        }
        Ok(())
    }

    /// Notes that this person has the request's page open; returns how many milliseconds
    /// remain before they may approve it.
    pub(crate) async fn note_view(&self, who: &SignedIn, request_id: &str) -> Result<i64, Error> {
        let guards = self.guards().await?;
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let first = rows::first_view(&mut tx, request_id, &who.person.id, now).await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok((first + i64::from(guards.approve_delay_ms) - now).max(0))
    }

    /// Refuses an approval started before the person had the request's page open for the
    /// approve delay.
    pub(crate) async fn check_approve_delay(
        &self,
        who: &SignedIn,
        request_id: &str,
    ) -> Result<(), Error> {
        let delay = i64::from(self.guards().await?.approve_delay_ms);
        if delay == 0 {
            return Ok(());
        }
        let seen = rows::viewed_at(self.db.reader(), request_id, &who.person.id).await?;
        match seen {
            Some(at) if self.now() - at >= delay => Ok(()),
            Some(_) => Err(Error::Conflict(
                "take a moment to read the request: approving opens shortly after the page does"
                    .into(),
            )),
            None => Err(Error::Conflict(
                "open the request's page and read it before approving".into(),
            )),
        }
    }
}

/// How many mails each of these approvers got in the minute before `now`: one read for all of
/// them. Mail is judged against it first, so that once people are at their limit (the common
/// case in a flood) no write transaction is taken and held mails do not queue behind request
/// intake for the writer.
pub(crate) async fn prompts_last_minute(
    db: &store::Db,
    user_ids: &[&str],
    now: Millis,
) -> Result<std::collections::HashMap<String, i64>, Error> {
    Ok(rows::prompts_since_each(db.reader(), user_ids, now - 60_000).await?)
}

/// Whether this approver may be mailed about this request at `now`, given at most `per_minute`
/// mails a minute; if so, the mail is counted, in the same conditional write, so mails sent at
/// the same instant cannot overshoot the limit. (A free function: mail goes out from a task of
/// its own, after the request is committed.)
pub(crate) async fn take_prompt(
    db: &store::Db,
    user_id: &str,
    request_id: &str,
    per_minute: u32,
    now: Millis,
) -> Result<bool, Error> {
    let mut tx = db.begin().await?;
    if db.backend() == store::Backend::Postgres {
        rows::lock_prompts(&mut tx, user_id).await?;
    }
    let taken = rows::take_prompt(
        &mut tx,
        user_id,
        request_id,
        now,
        now - 60_000,
        i64::from(per_minute),
    )
    .await?;
    tx.commit().await.map_err(store::StoreError::from)?;
    Ok(taken)
}
