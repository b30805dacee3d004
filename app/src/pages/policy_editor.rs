//! The rule-by-rule policy editor (admins), on `/admin/policy` above the version history.
//!
//! The active policy arrives as one form per rule. Admins add, edit, remove and reorder rules;
//! "Check" asks the server to read the draft exactly as `countersign policy apply` would,
//! marks every problem next to its field, and shows the draft's diff against the policy in
//! force and, when a sample or recent request is chosen, which rule would decide it and why
//! (with the rules passed over). "Apply" stores the draft as a new version, refused if another
//! version was applied since the editor opened. Nothing is decided in the browser.

use leptos::prelude::*;

use crate::api::{
    apply_policy_draft, policy_editor, preview_policy, AppError, DraftCheck, DraftPreview,
    EditablePolicy, FieldNote, RuleDraft, SampleDraft,
};
use crate::ui::{ErrorBox, Loading};

/// The data sensitivity levels a rule can list.
const LEVELS: [&str; 4] = ["public", "internal", "confidential", "restricted"];

/// The editor; `applied` is bumped after a new version is applied (the history reloads).
#[component]
pub fn PolicyEditor(applied: RwSignal<u64>) -> impl IntoView {
    let start = crate::api::page_resource(move || applied.get(), |_| policy_editor());
    view! {
        <Transition fallback=Loading>
            {move || Suspend::new(async move {
                match start.await {
                    Ok(policy) => view! { <Draft policy applied/> }.into_any(),
                    Err(e) => super::failure(e),
                }
            })}
        </Transition>
    }
}

/// One rule in the draft: a stable key (so reordering moves, not rebuilds, its inputs) and its
/// fields.
type Slot = (u64, RwSignal<RuleDraft>);

#[component]
fn Draft(policy: EditablePolicy, applied: RwSignal<u64>) -> impl IntoView {
    let base_version = policy.version;
    let next_key = StoredValue::new(policy.rules.len() as u64);
    let rules = RwSignal::new(
        policy
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as u64, RwSignal::new(r)))
            .collect::<Vec<Slot>>(),
    );
    let problems = RwSignal::new(Vec::<FieldNote>::new());
    let preview = RwSignal::new(None::<DraftPreview>);
    let error = RwSignal::new(None::<AppError>);
    let busy = RwSignal::new(false);
    let sample = RwSignal::new(SampleDraft::default());
    let recent_choice = RwSignal::new(String::new());
    let recent = StoredValue::new(policy.recent);

    let draft = move || -> Vec<RuleDraft> {
        rules.with_untracked(|v| v.iter().map(|(_, r)| r.get_untracked()).collect())
    };
    // Any edit makes the last check stale: the diff and dry run no longer describe the draft.
    Effect::new(move |_| {
        rules.with(|v| v.iter().for_each(|(_, r)| r.track()));
        preview.set(None);
    });

    let check = move |with_dry_run: bool| {
        error.set(None);
        busy.set(true);
        let (sample, recent) = if !with_dry_run {
            (None, None)
        } else if recent_choice.get_untracked().is_empty() {
            (Some(sample.get_untracked()), None)
        } else {
            (None, Some(recent_choice.get_untracked()))
        };
        let request = DraftCheck {
            rules: draft(),
            sample,
            recent,
        };
        leptos::task::spawn_local(async move {
            match preview_policy(request).await {
                Ok(p) => {
                    problems.set(p.problems.clone());
                    preview.set(Some(p));
                }
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    let apply = move |_| {
        error.set(None);
        busy.set(true);
        let rules_now = draft();
        leptos::task::spawn_local(async move {
            match apply_policy_draft(base_version, rules_now).await {
                Ok(_) => applied.update(|n| *n += 1),
                Err(e) => error.set(Some(e)),
            }
            busy.set(false);
        });
    };
    let add = move |_| {
        let key = next_key.get_value();
        next_key.set_value(key + 1);
        let rule = RuleDraft {
            id: format!("rule-{}", key + 1),
            outcome: "require".into(),
            approvals: "1".into(),
            approvers: "owner".into(),
            ..RuleDraft::default()
        };
        rules.update(|v| v.push((key, RwSignal::new(rule))));
    };
    let valid = move || preview.with(|p| p.as_ref().is_some_and(|p| p.problems.is_empty()));

    view! {
        <section class="card policy-editor">
            <h2>"Rules"</h2>
            <p class="hint">
                "Checked in order; the first rule whose conditions all hold decides. When none matches, "
                "the agent's owner must approve. Empty fields are not conditions."
            </p>
            <ol class="rules">
                <For each=move || rules.get() key=|(k, _)| *k let:slot>
                    <RuleCard key=slot.0 rule=slot.1 rules problems/>
                </For>
            </ol>
            {move || rules.with(|v| v.is_empty()).then(|| view! {
                <p class="empty">"No rules: every request needs one approval from the agent's owner."</p>
            })}
            <button type="button" on:click=add>"Add a rule"</button>

            <h3>"Try it"</h3>
            <div class="dry-run">
                <label>"A recent request "
                    <select name="recent" on:change=move |ev| recent_choice.set(event_target_value(&ev))>
                        <option value="">"— or describe one below —"</option>
                        {recent.get_value().into_iter().map(|(id, label)| view! { <option value=id>{label}</option> }).collect_view()}
                    </select>
                </label>
                <fieldset class="sample" disabled=move || !recent_choice.get().is_empty()>
                    <SampleField sample name="action_type" label="Action type" placeholder="payments.transfer"
                        field=|s| &mut s.action_type/>
                    <SampleField sample name="target" label="Target" placeholder="bank-api"
                        field=|s| &mut s.target/>
                    <SampleField sample name="environment" label="Environment" placeholder="production"
                        field=|s| &mut s.environment/>
                    <label>"Data sensitivity "
                        <select name="sample_data_sensitivity"
                            on:change=move |ev| sample.update(|s| s.data_sensitivity = event_target_value(&ev))>
                            <option value="">"—"</option>
                            {LEVELS.map(|l| view! { <option value=l>{l}</option> }).collect_view()}
                        </select>
                    </label>
                    <SampleField sample name="amount" label="Amount" placeholder="250.00"
                        field=|s| &mut s.amount/>
                    <SampleField sample name="currency" label="Currency" placeholder="EUR"
                        field=|s| &mut s.currency/>
                    <SampleField sample name="delegation_depth" label="Delegation depth" placeholder="0"
                        field=|s| &mut s.delegation_depth/>
                </fieldset>
            </div>

            <div class="buttons">
                <button type="button" on:click=move |_| check(false) disabled=move || busy.get()>"Check draft"</button>
                <button type="button" on:click=move |_| check(true) disabled=move || busy.get()>"Check and dry-run"</button>
                <button type="button" class="primary" on:click=apply
                    disabled=move || busy.get() || !valid()
                    title="Check the draft first">
                    "Apply as a new version"
                </button>
            </div>
            {move || error.get().map(|e| view! { <ErrorBox error=e/> })}
            {move || problems.with(|p| (!p.is_empty()).then(|| view! {
                <p class="error" role="alert">
                    {format!("{} problem(s) in the draft; see the marked fields.", p.len())}
                </p>
            }))}
            {move || preview.get().filter(|p| p.problems.is_empty()).map(|p| view! { <PreviewView p/> })}
        </section>
    }
    .into_any()
}

/// What a valid draft would do: the dry run first, then the diff.
#[component]
fn PreviewView(p: DraftPreview) -> impl IntoView {
    let changed = p.diff.iter().any(|l| l.op != "same");
    view! {
        {p.dry_run.map(|d| view! {
            <div class="dry-run-result" role="status">
                <p>
                    <strong>{d.request}</strong> " → rule " <code class="matched-rule">{d.rule_id}</code>
                    ": " <span class=format!("outcome {}", d.outcome)>{match d.outcome.as_str() {
                        "require" => format!("needs {} approval(s)", d.approvals),
                        "allow" => "allowed without a person".to_string(),
                        _ => "denied".to_string(),
                    }}</span>
                </p>
                <p class="explanation">{d.explanation}</p>
                {(!d.passed_over.is_empty()).then(|| view! {
                    <p class="hint">"Passed over:"</p>
                    <ul class="passed-over">
                        {d.passed_over.into_iter().map(|(id, why)| view! {
                            <li><code>{id}</code> ": " {why}</li>
                        }).collect_view()}
                    </ul>
                })}
            </div>
        })}
        <h3>"Draft against the policy in force"</h3>
        {if changed {
            view! {
                <pre class="diff draft-diff">
                    {p.diff.into_iter().map(|l| {
                        let (mark, class) = match l.op.as_str() {
                            "added" => ("+ ", "added"),
                            "removed" => ("- ", "removed"),
                            _ => ("  ", "same"),
                        };
                        view! { <span class=class>{mark}{l.line}"\n"</span> }
                    }).collect_view()}
                </pre>
            }.into_any()
        } else {
            view! { <p class="hint draft-diff">"No change against the policy in force."</p> }.into_any()
        }}
    }
}

#[component]
fn SampleField(
    sample: RwSignal<SampleDraft>,
    name: &'static str,
    label: &'static str,
    placeholder: &'static str,
    field: fn(&mut SampleDraft) -> &mut String,
) -> impl IntoView {
    view! {
        <label>{label} " "
            <input name=format!("sample_{name}") placeholder=placeholder
                prop:value=move || { let mut s = sample.get(); field(&mut s).clone() }
                on:input=move |ev| sample.update(|s| *field(s) = event_target_value(&ev))/>
        </label>
    }
}

/// One rule's form, with its problems next to their fields.
#[component]
fn RuleCard(
    key: u64,
    rule: RwSignal<RuleDraft>,
    rules: RwSignal<Vec<Slot>>,
    problems: RwSignal<Vec<FieldNote>>,
) -> impl IntoView {
    let at =
        Signal::derive(move || rules.with(|v| v.iter().position(|(k, _)| *k == key).unwrap_or(0)));
    let count = move || rules.with(Vec::len);
    let shift = move |by: isize| {
        // Read the position before `update` takes the list for writing: `at` reads it too.
        let i = at.get_untracked() as isize;
        rules.update(|v| {
            let j = i + by;
            if j >= 0 && (j as usize) < v.len() {
                v.swap(i as usize, j as usize);
            }
        })
    };
    let remove = move |_| rules.update(|v| v.retain(|(k, _)| *k != key));
    // A memo, so typing in another field does not rebuild the outcome's fields (and lose focus).
    let outcome = Memo::new(move |_| rule.with(|r| r.outcome.clone()));
    let levels = move || rule.with(|r| r.data_sensitivity.clone());
    let props = Field {
        key,
        rule,
        at,
        problems,
    };
    view! {
        <li class="rule-card" data-rule=move || rule.with(|r| r.id.clone())>
            <div class="rule-head">
                <span class="seq">{move || format!("#{}", at.get() + 1)}</span>
                <div class="actions">
                    <button type="button" aria-label="Move up" disabled=move || at.get() == 0
                        on:click=move |_| shift(-1)>"↑"</button>
                    <button type="button" aria-label="Move down" disabled=move || { at.get() + 1 >= count() }
                        on:click=move |_| shift(1)>"↓"</button>
                    <button type="button" class="danger" on:click=remove>"Remove"</button>
                </div>
            </div>
            {props.text("id", "Id", "large-payments", |r| &mut r.id)}
            {props.text("description", "Description", "Transfers above the limit", |r| &mut r.description)}
            <fieldset>
                <legend>"When (all given conditions hold)"</legend>
                {props.text("action", "Action type (glob)", "payments.*", |r| &mut r.action)}
                {props.text("target", "Target (glob)", "bank-api", |r| &mut r.target)}
                {props.text("environment", "Environments (comma-separated)", "production, staging", |r| &mut r.environment)}
                <div class="levels">
                    <span>"Data sensitivity "</span>
                    {LEVELS.map(|level| view! {
                        <label class="inline">
                            <input type="checkbox" name=format!("data_sensitivity_{level}")
                                prop:checked=move || levels().iter().any(|l| l == level)
                                on:change=move |ev| {
                                    let on = event_target_checked(&ev);
                                    rule.update(|r| {
                                        r.data_sensitivity.retain(|l| l != level);
                                        if on {
                                            r.data_sensitivity.push(level.to_string());
                                            // Keep the file's order, least to most sensitive.
                                            r.data_sensitivity.sort_by_key(|l| LEVELS.iter().position(|x| x == l));
                                        }
                                    });
                                }/>
                            {level}
                        </label>
                    }).collect_view()}
                    {props.problem("data_sensitivity")}
                </div>
                <div class="amounts">
                    {props.text("amount_at_least", "Amount at least", "1000", |r| &mut r.amount_at_least)}
                    {props.text("amount_below", "Amount below", "10000", |r| &mut r.amount_below)}
                    {props.text("amount_currency", "Currency", "EUR", |r| &mut r.amount_currency)}
                </div>
                <div class="depths">
                    {props.text("delegation_depth_at_least", "Delegation depth at least", "2", |r| &mut r.delegation_depth_at_least)}
                    {props.text("delegation_depth_below", "Delegation depth below", "1", |r| &mut r.delegation_depth_below)}
                </div>
            </fieldset>
            <fieldset>
                <legend>"Then"</legend>
                <label>"Outcome "
                    <select name="outcome" prop:value=outcome
                        on:change=move |ev| rule.update(|r| r.outcome = event_target_value(&ev))>
                        <option value="allow">"allow"</option>
                        <option value="require">"require approvals"</option>
                        <option value="deny">"deny"</option>
                    </select>
                </label>
                {props.problem("outcome")}
                {move || match outcome.get().as_str() {
                    "require" => view! {
                        {props.text("approvals", "Approvals (distinct people)", "2", |r| &mut r.approvals)}
                        {props.text("approvers", "Approvers: owner, admins, group:NAME", "group:finance, group:sre", |r| &mut r.approvers)}
                        {props.flag("all_groups", "At least one approval from each approver source", |r| &mut r.all_groups)}
                        {props.flag("exclude_owner", "The agent's owner's approval does not count (four eyes)", |r| &mut r.exclude_owner)}
                        {props.text("request_ttl_seconds", "Waits for approvals (seconds)", "default", |r| &mut r.request_ttl_seconds)}
                        {props.text("grant_ttl_seconds", "Grant lifetime (seconds)", "60", |r| &mut r.grant_ttl_seconds)}
                        {props.text("standing_max_seconds", "Standing approvals allowed for up to (seconds; one approval only)", "not allowed", |r| &mut r.standing_max_seconds)}
                        {props.text("standing_max_uses", "Standing approvals allow at most (uses)", "100", |r| &mut r.standing_max_uses)}
                    }.into_any(),
                    "deny" => props.text("reason", "Reason given to the agent", "Production deletes are not allowed", |r| &mut r.reason).into_any(),
                    _ => props.text("grant_ttl_seconds", "Grant lifetime (seconds)", "60", |r| &mut r.grant_ttl_seconds).into_any(),
                }}
                {move || (outcome.get() != "deny").then(|| view! {
                    {props.text("credential", "Releases a credential from provider", "orders-db", |r| &mut r.credential)}
                    {props.text("credential_ttl_seconds", "Credential lifetime (seconds)", "600", |r| &mut r.credential_ttl_seconds)}
                })}
            </fieldset>
        </li>
    }
    .into_any()
}

/// What a rule card's inputs share: which rule, where it is, and the draft's problems.
#[derive(Clone, Copy)]
struct Field {
    key: u64,
    rule: RwSignal<RuleDraft>,
    at: Signal<usize>,
    problems: RwSignal<Vec<FieldNote>>,
}

impl Field {
    /// The problem with `name` of this rule, if the last check found one.
    fn problem(self, name: &'static str) -> impl IntoView {
        let Field { at, problems, .. } = self;
        move || {
            problems.with(|ps| {
                ps.iter()
                    .find(|p| p.rule == Some(at.get()) && p.field == name)
                    .map(|p| view! { <p class="field-error">{p.message.clone()}</p> })
            })
        }
    }

    fn text(
        self,
        name: &'static str,
        label: &'static str,
        placeholder: &'static str,
        field: fn(&mut RuleDraft) -> &mut String,
    ) -> AnyView {
        let rule = self.rule;
        let id = format!("rule-{}-{name}", self.key);
        view! {
            <label for=id.clone()>{label}</label>
            <input id=id name=name placeholder=placeholder
                prop:value=move || { let mut r = rule.get(); field(&mut r).clone() }
                on:input=move |ev| rule.update(|r| *field(r) = event_target_value(&ev))/>
            {self.problem(name)}
        }
        .into_any()
    }

    fn flag(
        self,
        name: &'static str,
        label: &'static str,
        field: fn(&mut RuleDraft) -> &mut bool,
    ) -> AnyView {
        let rule = self.rule;
        view! {
            <label class="inline">
                <input type="checkbox" name=name
                    prop:checked=move || { let mut r = rule.get(); *field(&mut r) }
                    on:change=move |ev| rule.update(|r| *field(r) = event_target_checked(&ev))/>
                {label}
            </label>
            {self.problem(name)}
        }
        .into_any()
    }
}
