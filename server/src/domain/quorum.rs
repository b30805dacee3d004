//! Who may approve a request, and when enough of them have.
//!
//! A rule names approver sources (`owner`, `group:<name>`, `admins`) and a number of distinct
//! people. With `all_groups`, the approvals must also cover every listed source with a
//! different person each: we check that with a small bipartite matching (people to sources),
//! so one person who happens to be in two groups cannot stand in for both. With
//! `exclude_owner` (four eyes), the agent's own owner can neither approve nor deny.

use serde::{Deserialize, Serialize};

use super::policy::ApproverSource;

/// The approval requirement stored with each request (copied from the rule that matched, so a
/// later policy change never alters a request already waiting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproverRule {
    /// Distinct people needed.
    pub approvals: u32,
    /// Sources, as written in the policy (`owner`, `admins`, `group:finance`).
    pub approvers: Vec<String>,
    /// At least one approval from each source.
    pub all_groups: bool,
    /// The agent's owner does not count.
    pub exclude_owner: bool,
}

/// What we know about a person when judging eligibility.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Their user id.
    pub user_id: &'a str,
    /// Whether they are an admin.
    pub is_admin: bool,
    /// Their groups.
    pub groups: &'a [String],
    /// Whether their account is active.
    pub active: bool,
}

impl ApproverRule {
    /// The default: one approval from the agent's owner.
    pub fn owner_only() -> Self {
        Self {
            approvals: 1,
            approvers: vec!["owner".into()],
            all_groups: false,
            exclude_owner: false,
        }
    }

    /// The sources (indices into `approvers`) this person satisfies. Empty means not eligible.
    pub fn sources_of(&self, who: &Candidate<'_>, agent_owner_id: &str) -> Vec<usize> {
        if !who.active {
            return Vec::new();
        }
        let is_owner = who.user_id == agent_owner_id;
        if self.exclude_owner && is_owner {
            return Vec::new();
        }
        self.approvers
            .iter()
            .enumerate()
            .filter(|(_, s)| match s.parse::<ApproverSource>() {
                Ok(ApproverSource::Owner) => is_owner,
                Ok(ApproverSource::Admins) => who.is_admin,
                Ok(ApproverSource::Group(g)) => who.groups.contains(&g),
                Err(_) => false,
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether this person may approve or deny.
    pub fn is_eligible(&self, who: &Candidate<'_>, agent_owner_id: &str) -> bool {
        !self.sources_of(who, agent_owner_id).is_empty()
    }

    /// Whether these approvals meet the rule. Each entry is one distinct eligible approver's
    /// sources (as returned by [`Self::sources_of`]); ineligible approvers must be left out.
    pub fn is_met(&self, approvers: &[Vec<usize>]) -> bool {
        let eligible: Vec<&Vec<usize>> = approvers.iter().filter(|s| !s.is_empty()).collect();
        if (eligible.len() as u64) < u64::from(self.approvals) {
            return false;
        }
        if !self.all_groups {
            return true;
        }
        // Every source needs its own person: a matching that saturates the sources.
        let sources = self.approvers.len();
        let mut person_of_source: Vec<Option<usize>> = vec![None; sources];
        for source in 0..sources {
            let mut seen = vec![false; eligible.len()];
            if !augment(source, &eligible, &mut person_of_source, &mut seen) {
                return false;
            }
        }
        true
    }
}

/// Kuhn's augmenting path step: find a person for `source`, re-seating others if needed.
fn augment(
    source: usize,
    people: &[&Vec<usize>],
    person_of_source: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    for (p, sources) in people.iter().enumerate() {
        if seen[p] || !sources.contains(&source) {
            continue;
        }
        seen[p] = true;
        // Person p is free, or the source p currently covers can be covered by someone else.
        let current = person_of_source.iter().position(|x| *x == Some(p));
        let free = match current {
            None => true,
            Some(other) => augment(other, people, person_of_source, seen),
        };
        if free {
            if let Some(other) = current {
                // p moves from `other` (now re-covered during augment) to `source`.
                if person_of_source[other] == Some(p) {
                    person_of_source[other] = None;
                }
            }
            person_of_source[source] = Some(p);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        approvals: u32,
        approvers: &[&str],
        all_groups: bool,
        exclude_owner: bool,
    ) -> ApproverRule {
        ApproverRule {
            approvals,
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            all_groups,
            exclude_owner,
        }
    }

    fn person<'a>(id: &'a str, admin: bool, groups: &'a [String]) -> Candidate<'a> {
        Candidate {
            user_id: id,
            is_admin: admin,
            groups,
            active: true,
        }
    }

    #[test]
    fn owner_is_eligible_by_default_and_others_are_not() {
        let r = ApproverRule::owner_only();
        let none: Vec<String> = vec![];
        assert!(r.is_eligible(&person("alice", false, &none), "alice"));
        assert!(!r.is_eligible(&person("bob", true, &none), "alice"));
    }

    #[test]
    fn four_eyes_excludes_the_owner_even_when_in_the_group() {
        let r = rule(1, &["owner", "group:finance"], false, true);
        let fin = vec!["finance".to_string()];
        assert!(!r.is_eligible(&person("alice", false, &fin), "alice"));
        assert!(r.is_eligible(&person("bob", false, &fin), "alice"));
    }

    #[test]
    fn deactivated_people_are_never_eligible() {
        let r = rule(1, &["admins"], false, false);
        let none: Vec<String> = vec![];
        let mut p = person("root", true, &none);
        p.active = false;
        assert!(!r.is_eligible(&p, "alice"));
    }

    #[test]
    fn quorum_counts_distinct_eligible_people() {
        let r = rule(2, &["owner", "admins"], false, false);
        assert!(!r.is_met(&[vec![0]]));
        assert!(!r.is_met(&[vec![0], vec![]]));
        assert!(r.is_met(&[vec![0], vec![1]]));
    }

    #[test]
    fn all_groups_needs_a_different_person_per_source() {
        let r = rule(2, &["group:finance", "group:sre"], true, false);
        // Two people both only in finance: sre is not covered.
        assert!(!r.is_met(&[vec![0], vec![0]]));
        // One in both groups plus one in finance: a matching exists (both→sre, finance→finance).
        assert!(r.is_met(&[vec![0, 1], vec![0]]));
        // Order does not matter for the matching.
        assert!(r.is_met(&[vec![0], vec![0, 1]]));
        assert!(r.is_met(&[vec![1], vec![0]]));
    }

    #[test]
    fn all_groups_with_three_sources_reseats_people() {
        let r = rule(3, &["owner", "group:a", "group:b"], true, false);
        // p0 covers owner or a; p1 covers a or b; p2 covers only a... then b must go to p1
        // and owner to p0.
        assert!(r.is_met(&[vec![0, 1], vec![1, 2], vec![1]]));
        // Nobody can cover b.
        assert!(!r.is_met(&[vec![0, 1], vec![1], vec![1]]));
    }
}
