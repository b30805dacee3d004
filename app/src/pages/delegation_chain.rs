//! A request's delegation, read as a chain of actors rather than as JSON: who handed the work to
//! whom, ending at the agent that asks.
//!
//! Two sources, shown apart because they are not equally trustworthy:
//!
//! - the chain the agent *claims* (`context.delegation`, outermost first): "alice@example.com →
//!   planner-agent → invoice-bot (this agent)", each hop with the party it acts for;
//! - the lineage Countersign has *registered* (the agent's parents, set by an owner or an admin):
//!   "registered as a sub-agent of planner-agent, under ops-root".
//!
//! Everything is agent-supplied or stored text, rendered as text nodes (never HTML).

use leptos::prelude::*;
use serde_json::Value;

use crate::api::Ancestor;

/// One actor in the claimed chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// Who acts, e.g. `planner-agent`, or the person at the start of the chain.
    pub actor: String,
    /// On whose behalf, when the hop says.
    pub on_behalf_of: Option<String>,
}

/// The claimed chain as actors, outermost first, ending with `agent_name`: a hop's
/// `on_behalf_of` that is not the previous actor becomes an actor of its own before it (so
/// `[{planner-agent, for alice}]` reads "alice → planner-agent → this agent"). Empty when the
/// agent claims no delegation. Entries that are not objects with a text `actor` are skipped
/// (intake refuses them; a stored request is read defensively all the same).
pub fn hops(delegation: &[Value], agent_name: &str) -> Vec<Hop> {
    let mut out: Vec<Hop> = Vec::new();
    for link in delegation {
        let Some(actor) = link.get("actor").and_then(Value::as_str) else {
            continue;
        };
        let on_behalf_of = link
            .get("on_behalf_of")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(principal) = &on_behalf_of {
            if out.last().map(|h| &h.actor) != Some(principal) {
                out.push(Hop {
                    actor: principal.clone(),
                    on_behalf_of: None,
                });
            }
        }
        out.push(Hop {
            actor: actor.to_string(),
            on_behalf_of,
        });
    }
    if !out.is_empty() {
        out.push(Hop {
            actor: format!("{agent_name} (this agent)"),
            on_behalf_of: None,
        });
    }
    out
}

/// The delegation section's content on the request page.
#[component]
pub fn DelegationChain(
    /// `context.delegation` as the agent sent it.
    delegation: Vec<Value>,
    /// The asking agent's name.
    agent_name: String,
    /// Its registered ancestors, outermost first.
    lineage: Vec<Ancestor>,
) -> impl IntoView {
    let claimed = hops(&delegation, &agent_name);
    let direct = claimed.is_empty() && lineage.is_empty();
    let registered = (!lineage.is_empty()).then(|| {
        let names: Vec<String> = lineage
            .iter()
            .rev()
            .map(|a| {
                if a.name.is_empty() {
                    a.id.clone()
                } else {
                    a.name.clone()
                }
            })
            .collect();
        let (parent, above) = names
            .split_first()
            .map_or((String::new(), &[][..]), |(p, a)| (p.clone(), a));
        let above = if above.is_empty() {
            String::new()
        } else {
            format!(", under {}", above.join(", under "))
        };
        view! {
            <p class="lineage">
                "Registered as a sub-agent of " <strong>{parent}</strong> {above} "."
            </p>
        }
    });
    view! {
        {direct.then(|| view! { <p class="none">"The agent acts directly for its owner."</p> })}
        {(!claimed.is_empty()).then(|| view! {
            <ol class="chain delegation-chain" aria-label="Delegation chain, outermost first">
                {claimed
                    .into_iter()
                    .enumerate()
                    .map(|(i, hop)| view! {
                        <li>
                            {(i > 0).then_some("→ ")}
                            <span class="actor">{hop.actor}</span>
                            {hop.on_behalf_of.map(|p| view! { " " <span class="on-behalf-of">{format!("(on behalf of {p})")}</span> })}
                        </li>
                    })
                    .collect_view()}
            </ol>
        })}
        {registered}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn actors(h: &[Hop]) -> Vec<&str> {
        h.iter().map(|h| h.actor.as_str()).collect()
    }

    #[test]
    fn a_chain_reads_from_the_person_to_this_agent() {
        let chain = [json!({ "actor": "planner-agent", "on_behalf_of": "alice@example.com" })];
        let h = hops(&chain, "invoice-bot");
        assert_eq!(
            actors(&h),
            [
                "alice@example.com",
                "planner-agent",
                "invoice-bot (this agent)"
            ]
        );
        assert_eq!(h[1].on_behalf_of.as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn a_principal_that_is_the_previous_actor_is_not_repeated() {
        let chain = [
            json!({ "actor": "planner", "on_behalf_of": "alice@example.com" }),
            json!({ "actor": "researcher", "on_behalf_of": "planner" }),
            json!({ "actor": "writer" }),
            json!({ "bogus": 1 }),
        ];
        assert_eq!(
            actors(&hops(&chain, "bot")),
            [
                "alice@example.com",
                "planner",
                "researcher",
                "writer",
                "bot (this agent)"
            ]
        );
        assert!(hops(&[], "bot").is_empty());
    }
}
