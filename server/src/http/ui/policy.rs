//! The policy's server functions: versions and rollback, the editor's check and apply.

use app::api::{
    AppError, DiffLine, DraftCheck, DraftPreview, DryRun, EditablePolicy, FieldNote, PolicyBackend,
    PolicyVersionItem, RuleDraft,
};
use async_trait::async_trait;
use axum::http::request::Parts;

use super::UiBackend;
use crate::domain::diff;
use crate::domain::policy::form::RuleForm;
use crate::service::policies::{DryRunOn, SampleRequest};

#[async_trait]
impl PolicyBackend for UiBackend {
    async fn policy_history(&self, req: &Parts) -> Result<Vec<PolicyVersionItem>, AppError> {
        let who = self.who(req).await?;
        Ok(self
            .core
            .policy_history(&who)
            .await?
            .into_iter()
            .map(|v| PolicyVersionItem {
                version: v.version,
                hash: v.hash,
                applied_by: v.applied_by,
                applied_at: v.applied_at,
                diff: diff_lines(v.diff),
                active: v.active,
            })
            .collect())
    }

    async fn rollback_policy(&self, req: &Parts, version: i64) -> Result<i64, AppError> {
        let who = self.who(req).await?;
        Ok(self.core.rollback_policy(&who, version).await?.0)
    }

    async fn policy_editor(&self, req: &Parts) -> Result<EditablePolicy, AppError> {
        let who = self.who(req).await?;
        let state = self.core.policy_editor(&who).await?;
        Ok(EditablePolicy {
            version: state.version,
            rules: transcode(&state.rules)?,
            recent: state.recent,
        })
    }

    async fn preview_policy(
        &self,
        req: &Parts,
        draft: DraftCheck,
    ) -> Result<DraftPreview, AppError> {
        let who = self.who(req).await?;
        let rules: Vec<RuleForm> = transcode(&draft.rules)?;
        let on = match (draft.sample, draft.recent) {
            (Some(s), _) => Some(DryRunOn::Sample(SampleRequest {
                action_type: s.action_type,
                target: s.target,
                environment: s.environment,
                data_sensitivity: s.data_sensitivity,
                amount: s.amount,
                currency: s.currency,
                delegation_depth: s.delegation_depth,
            })),
            (None, Some(id)) => Some(DryRunOn::Recent(id)),
            (None, None) => None,
        };
        let preview = self.core.preview_policy(&who, &rules, on).await?;
        Ok(DraftPreview {
            problems: preview
                .problems
                .into_iter()
                .map(|p| FieldNote {
                    rule: p.rule,
                    field: p.field,
                    message: p.message,
                })
                .collect(),
            text: preview.text,
            diff: diff_lines(preview.diff),
            dry_run: preview.dry_run.map(|(request, d)| DryRun {
                request,
                approvals: d.approvals_required(),
                outcome: d.outcome.kind().into(),
                rule_id: d.rule_id,
                explanation: d.explanation,
                passed_over: d
                    .passed_over
                    .into_iter()
                    .map(|p| (p.rule_id, p.why))
                    .collect(),
            }),
        })
    }

    async fn apply_policy_draft(
        &self,
        req: &Parts,
        base_version: i64,
        rules: Vec<RuleDraft>,
    ) -> Result<i64, AppError> {
        let who = self.who(req).await?;
        let rules: Vec<RuleForm> = transcode(&rules)?;
        Ok(self
            .core
            .apply_policy_draft(&who, base_version, &rules)
            .await?)
    }
}

/// Converts between the app's editor rules and the domain's forms. They are the same shape on
/// purpose (the app crate cannot depend on the domain); a unit test keeps them in step.
fn transcode<A: serde::Serialize, B: serde::de::DeserializeOwned>(a: &A) -> Result<B, AppError> {
    serde_json::to_value(a)
        .and_then(serde_json::from_value)
        .map_err(|e| AppError::Server(format!("editor model out of step: {e}")))
}

fn diff_lines(lines: Vec<diff::Line>) -> Vec<DiffLine> {
    lines
        .into_iter()
        .map(|l| {
            let (op, line) = match l {
                diff::Line::Same(s) => ("same", s),
                diff::Line::Removed(s) => ("removed", s),
                diff::Line::Added(s) => ("added", s),
            };
            DiffLine {
                op: op.into(),
                line,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The app's editor rule and the domain's form must stay the same shape: `transcode` moves
    /// one into the other by field name, so a field added to one side only would be dropped.
    #[test]
    fn editor_rules_and_policy_forms_have_the_same_fields() {
        let form = RuleForm {
            id: "a".into(),
            description: "b".into(),
            action: "c".into(),
            target: "d".into(),
            environment: "e".into(),
            data_sensitivity: vec!["f".into()],
            amount_currency: "g".into(),
            amount_at_least: "h".into(),
            amount_below: "i".into(),
            delegation_depth_at_least: "r".into(),
            delegation_depth_below: "s".into(),
            outcome: "j".into(),
            approvals: "k".into(),
            approvers: "l".into(),
            all_groups: true,
            exclude_owner: true,
            request_ttl_seconds: "m".into(),
            grant_ttl_seconds: "n".into(),
            reason: "o".into(),
            credential: "p".into(),
            credential_ttl_seconds: "q".into(),
            standing_max_seconds: "r".into(),
            standing_max_uses: "s".into(),
        };
        let draft: RuleDraft = transcode(&form).unwrap();
        assert_eq!(
            serde_json::to_value(&draft).unwrap(),
            serde_json::to_value(&form).unwrap()
        );
        let back: RuleForm = transcode(&draft).unwrap();
        assert_eq!(back, form);
    }
}
