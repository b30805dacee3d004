//! Reading the audit chain: verifying it end to end, exporting it as JSON lines.

use std::io::Write;

use super::{Countersign, Error};
use crate::domain::audit::{BrokenLink, ChainVerifier};
use crate::domain::canonical::canonical_json;
use crate::store::audit;

/// The result of `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every event checks out.
    Intact {
        /// Events checked.
        events: i64,
        /// The head hash.
        head: String,
    },
    /// The first broken link.
    Broken(BrokenLink),
}

const PAGE: i64 = 1000;

impl Countersign {
    /// Recomputes the whole chain and reports the first broken link.
    pub async fn verify_audit(&self) -> Result<Verification, Error> {
        let mut v = ChainVerifier::new();
        let mut after = 0;
        loop {
            let page = audit::page(self.db.reader(), after, PAGE).await?;
            if page.is_empty() {
                break;
            }
            for e in &page {
                if let Err(broken) = v.check(e) {
                    return Ok(Verification::Broken(broken));
                }
                after = e.seq;
            }
        }
        // The head row must agree with the last event: a truncated chain is broken too.
        let (head_seq, head_hash) = audit::head(self.db.reader()).await?;
        if head_seq != v.checked() || head_hash != v.head() {
            return Ok(Verification::Broken(BrokenLink {
                seq: v.checked() + 1,
                reason: format!(
                    "the chain ends at event {} but its head records event {head_seq}",
                    v.checked()
                ),
            }));
        }
        Ok(Verification::Intact {
            events: v.checked(),
            head: v.head().to_string(),
        })
    }

    /// Writes events as JSON lines (canonical JSON, one event per line): the whole chain, or
    /// one request's evidence. Returns how many were written.
    pub async fn export_audit(
        &self,
        request_id: Option<&str>,
        out: &mut (dyn Write + Send),
    ) -> Result<u64, Error> {
        let mut n = 0;
        let mut write = |e: &crate::domain::audit::AuditEvent| -> Result<(), Error> {
            let line = canonical_json(&serde_json::to_value(e).map_err(Error::internal)?);
            writeln!(out, "{line}").map_err(Error::internal)?;
            n += 1;
            Ok(())
        };
        match request_id {
            Some(id) => {
                let events = audit::for_request(self.db.reader(), id).await?;
                if events.is_empty() {
                    return Err(Error::NotFound(format!("no audit events for request {id}")));
                }
                events.iter().try_for_each(&mut write)?;
            }
            None => {
                let mut after = 0;
                loop {
                    let page = audit::page(self.db.reader(), after, PAGE).await?;
                    if page.is_empty() {
                        break;
                    }
                    for e in &page {
                        write(e)?;
                        after = e.seq;
                    }
                }
            }
        }
        Ok(n)
    }
}
