//! The JSON Schema of a create body, as the OpenAPI document publishes it.
//!
//! Written next to the validator and built from the same constants and [`Limits`], so the
//! document cannot promise a limit the validator does not keep. It describes; it decides
//! nothing: [`super::parse_new_request`] stays the only judge of a body. The integration tests
//! check the two agree (every body the server accepts validates against this schema, and
//! representative refusals are refused by both).
//!
//! What JSON Schema cannot say is said in the descriptions: nesting and size limits of
//! `action.params`, the interoperable number range inside it, and duplicate keys (refused
//! everywhere in the body). `null` for an optional field means the same as leaving it out, so
//! every optional field also admits `null`.

use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::{
    Action, Amount, Context, DataSensitivity, Delegation, Intent, Limits, NewRequest,
    ACTOR_MAX_CHARS, AMOUNT_MAX_FRACTION_DIGITS, AMOUNT_MAX_INTEGER_DIGITS, CURRENCY_LETTERS,
    ENVIRONMENT_MAX_BYTES, GOAL_MAX_CHARS, ON_BEHALF_OF_MAX_CHARS, OPERATION_MAX_CHARS,
    RATIONALE_MAX_CHARS, TARGET_MAX_CHARS, TASK_ID_MAX_CHARS, TYPE_MAX_BYTES,
};

/// Single-line text: no control characters (Unicode category Cc, which is exactly these two
/// ranges), as `check_line` refuses them.
const NO_CONTROL_CHARACTERS: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// Free text may span lines, but NUL is refused everywhere in a body.
const NO_NUL: &str = r"^[^\u0000]*$";

/// An object that refuses members it does not list, as the validator does.
fn closed_object() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
}

/// A string of `1..=max` characters (JSON Schema counts code points, as the validator does).
fn text(max: usize, pattern: &str, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .description(Some(description))
}

/// The same schema, or `null` (an optional field: `null` means absent).
fn or_null(schema: ObjectBuilder, types: Type) -> RefOr<Schema> {
    schema
        .schema_type(SchemaType::from_iter([types, Type::Null]))
        .into()
}

/// A reference to a named schema, or `null`.
fn ref_or_null(name: &str, description: &str) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(Ref::from_schema_name(name))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(description))
        .into()
}

impl PartialSchema for NewRequest {
    fn schema() -> RefOr<Schema> {
        let limits = Limits::default();
        closed_object()
            .description(Some(
                "What the agent asks permission for. The server hashes `{agent id, action, \
                 intent, context}` (RFC 8785 canonical JSON, SHA-256): the `action_hash`. A \
                 key given twice anywhere in the body is refused. The body is at most 64 KiB \
                 and nested at most 64 levels outside `action.params`.",
            ))
            .property("action", Ref::from_schema_name(Action::name()))
            .required("action")
            .property(
                "intent",
                ref_or_null(&Intent::name(), "Why the agent wants to do it."),
            )
            .property(
                "context",
                ref_or_null(
                    &Context::name(),
                    "Circumstances that policy and the reviewer take into account.",
                ),
            )
            .property(
                "expires_in",
                or_null(
                    ObjectBuilder::new()
                        .minimum(Some(1))
                        .maximum(Some(limits.max_expires_in))
                        .description(Some(
                            "Seconds the request may wait for a decision; policy may cap it. \
                             Not part of the action_hash.",
                        )),
                    Type::Integer,
                ),
            )
            .into()
    }
}

impl ToSchema for NewRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for (name, schema) in [
            (Action::name(), Action::schema()),
            (Intent::name(), Intent::schema()),
            (Context::name(), Context::schema()),
            (Amount::name(), Amount::schema()),
            (Delegation::name(), Delegation::schema()),
            (DataSensitivity::name(), DataSensitivity::schema()),
        ] {
            schemas.push((name.into_owned(), schema));
        }
    }
}

impl PartialSchema for Action {
    fn schema() -> RefOr<Schema> {
        let limits = Limits::default();
        let params = ObjectBuilder::new().description(Some(format!(
            "The operation's parameters, any JSON object, kept verbatim and bound by the \
                 action_hash. At most {} bytes as canonical JSON, nested at most {} levels \
                 (the object itself is level 1); integers within ±9007199254740991 (2^53 − 1) \
                 and finite numbers only (send larger values as strings); no NUL characters.",
            limits.max_params_bytes, limits.max_depth
        )));
        closed_object()
            .description(Some("The operation the agent asks permission for."))
            .property(
                "type",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!("^[a-z0-9_.-]{{1,{TYPE_MAX_BYTES}}}$")))
                    .description(Some("Dotted action kind, such as `payments.transfer`."))
                    .examples(["payments.transfer"]),
            )
            .required("type")
            .property(
                "target",
                text(
                    TARGET_MAX_CHARS,
                    NO_CONTROL_CHARACTERS,
                    "The system acted upon, such as `bank-api`; the grant's audience.",
                ),
            )
            .required("target")
            .property(
                "operation",
                or_null(
                    text(
                        OPERATION_MAX_CHARS,
                        NO_CONTROL_CHARACTERS,
                        "Free-form operation, such as `POST /v2/transfers`.",
                    ),
                    Type::String,
                ),
            )
            .property("params", or_null(params, Type::Object))
            .into()
    }
}

impl ToSchema for Action {}

impl PartialSchema for Intent {
    fn schema() -> RefOr<Schema> {
        closed_object()
            .description(Some("The agent's own explanation, shown to the approver."))
            .property(
                "goal",
                or_null(text(GOAL_MAX_CHARS, NO_NUL, "One-line goal."), Type::String),
            )
            .property(
                "rationale",
                or_null(
                    text(RATIONALE_MAX_CHARS, NO_NUL, "Longer justification."),
                    Type::String,
                ),
            )
            .into()
    }
}

impl ToSchema for Intent {}

impl PartialSchema for Context {
    fn schema() -> RefOr<Schema> {
        let limits = Limits::default();
        let delegation = ArrayBuilder::new()
            .items(Ref::from_schema_name(Delegation::name()))
            .max_items(Some(limits.max_delegation))
            .description(Some(
                "Actors on whose behalf the agent acts, outermost first. Approvers see it as a \
                 chain of actors, and every decision on the audit chain records it together with \
                 the agent's registered parents (sub-agents). Policy rules on delegation depth \
                 count the larger of this chain's length and the number of registered parents, \
                 so leaving the chain out never lowers the depth.",
            ));
        closed_object()
            .description(Some(
                "Circumstances of the action that policy and the reviewer take into account.",
            ))
            .property(
                "environment",
                or_null(
                    ObjectBuilder::new()
                        .pattern(Some(format!("^[a-z0-9_-]{{1,{ENVIRONMENT_MAX_BYTES}}}$")))
                        .description(Some("Deployment environment, such as `production`.")),
                    Type::String,
                ),
            )
            .property(
                "data_sensitivity",
                ref_or_null(
                    &DataSensitivity::name(),
                    "Classification of the data the action touches.",
                ),
            )
            .property(
                "amount",
                ref_or_null(&Amount::name(), "Monetary amount at stake."),
            )
            .property(
                "task_id",
                or_null(
                    text(
                        TASK_ID_MAX_CHARS,
                        NO_CONTROL_CHARACTERS,
                        "The agent's own task or run identifier.",
                    ),
                    Type::String,
                ),
            )
            .property(
                "delegation",
                delegation.schema_type(SchemaType::from_iter([Type::Array, Type::Null])),
            )
            .into()
    }
}

impl ToSchema for Context {}

impl PartialSchema for DataSensitivity {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(DataSensitivity::ALL.map(|level| level.as_str())))
            .description(Some("Data classification, least sensitive first."))
            .into()
    }
}

impl ToSchema for DataSensitivity {}

impl PartialSchema for Amount {
    fn schema() -> RefOr<Schema> {
        closed_object()
            .description(Some(
                "A monetary amount. The value is a decimal string, hashed and shown exactly as \
                 sent (`5000.00` stays `5000.00`); numbers are refused so nothing is rounded.",
            ))
            .property(
                "value",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!(
                        r"^[0-9]{{1,{AMOUNT_MAX_INTEGER_DIGITS}}}(\.[0-9]{{1,{AMOUNT_MAX_FRACTION_DIGITS}}})?$"
                    )))
                    .examples(["5000.00"]),
            )
            .required("value")
            .property(
                "currency",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!("^[A-Z]{{{CURRENCY_LETTERS}}}$")))
                    .description(Some("ISO 4217 alphabetic code."))
                    .examples(["EUR"]),
            )
            .required("currency")
            .into()
    }
}

impl ToSchema for Amount {}

impl PartialSchema for Delegation {
    fn schema() -> RefOr<Schema> {
        closed_object()
            .description(Some("One link of the delegation chain."))
            .property(
                "actor",
                text(
                    ACTOR_MAX_CHARS,
                    NO_CONTROL_CHARACTERS,
                    "The acting party, such as `planner-agent`.",
                ),
            )
            .required("actor")
            .property(
                "on_behalf_of",
                or_null(
                    text(
                        ON_BEHALF_OF_MAX_CHARS,
                        NO_CONTROL_CHARACTERS,
                        "The party the actor acts for, such as `alice@example.com`.",
                    ),
                    Type::String,
                ),
            )
            .into()
    }
}

impl ToSchema for Delegation {}
